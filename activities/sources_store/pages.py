"""Bronze pages: fetched pages stored compressed, once per source, URL and body."""

from __future__ import annotations

import zlib

from sqlalchemy import select

from activities.sources_store.base import StoreBase
from activities.sources_store.errors import PageNotFoundError
from activities.sources_store.helpers import PAGE_COLUMNS, page_ref, sha256_hex, table_of
from activities.storage import upsert, utcnow
from models.db_sources import BronzePageRow
from models.sources import PageRef


class PagesMixin(StoreBase):
    """Store and read bronze pages."""

    def put_page(
        self,
        source: str,
        url: str,
        final_url: str,
        status: int,
        headers: dict[str, str],
        content_type: str,
        body: bytes,
        rendered: bool,
        run_id: str | None,
    ) -> PageRef:
        """Store a fetched page; an identical refetch (same source, URL and body) adds
        nothing and returns the stored page (with its first ``fetched_at``)."""
        digest, url_digest = sha256_hex(body), sha256_hex(url)
        row = {
            "source": source,
            "url": url,
            "url_sha256": url_digest,
            "final_url": final_url,
            "status": status,
            "headers": dict(headers),
            "content_type": content_type,
            "sha256": digest,
            "size": len(body),
            "body": zlib.compress(body, 6),
            "rendered": rendered,
            "fetched_at": utcnow(),
            "run_id": run_id or None,
        }
        keys = ["source", "url_sha256", "sha256"]
        with self._db.session() as session:
            upsert(session, table_of(BronzePageRow), [row], keys, update=[])
            stored = session.execute(
                select(*PAGE_COLUMNS).where(
                    BronzePageRow.source == source,
                    BronzePageRow.url_sha256 == url_digest,
                    BronzePageRow.sha256 == digest,
                )
            ).one()
            return page_ref(stored)

    def get_page(self, bronze_id: int) -> tuple[PageRef, bytes]:
        """A stored page and its (decompressed) body.

        Raises:
            PageNotFoundError: No page has this id.
        """
        with self._db.session() as session:
            row = session.get(BronzePageRow, bronze_id)
            if row is None:
                raise PageNotFoundError(bronze_id)
            return page_ref(row), zlib.decompress(row.body)

    def get_page_body(self, bronze_id: int) -> bytes:
        """The decompressed body of a stored page (see :meth:`get_page`)."""
        with self._db.session() as session:
            body = session.scalar(select(BronzePageRow.body).where(BronzePageRow.id == bronze_id))
        if body is None:
            raise PageNotFoundError(bronze_id)
        return zlib.decompress(body)
