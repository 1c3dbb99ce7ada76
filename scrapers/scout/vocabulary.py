"""Words the scout reads meaning from: class names that say what an element holds, the
field names they map to, and words too generic to name a field."""

from __future__ import annotations

# fmt: off
SEMANTIC_WORDS = (
    "title", "name", "headline", "heading", "price", "cost", "amount", "author", "byline",
    "date", "time", "published", "rating", "stars", "review", "description", "summary",
    "desc", "image", "img", "photo", "thumb", "sku", "isbn", "publisher", "brand", "vendor",
    "category", "tag", "label", "value", "detail", "product", "item", "card", "result",
    "listing", "record", "entry", "row", "article", "post", "book", "offer", "location",
    "address", "phone", "email", "url", "link",
)
"""Class-name words that say what an element holds (``product-title``, ``price``)."""

CANONICAL_NAMES = {
    "headline": "title", "heading": "title", "cost": "price", "amount": "price",
    "byline": "author", "published": "date", "time": "date", "stars": "rating",
    "review": "rating", "desc": "description", "summary": "description", "img": "image",
    "photo": "image", "thumb": "image", "vendor": "publisher",
}
"""Field name for a class-name word, when it differs from the word."""

GENERIC_WORDS = frozenset({
    "product", "item", "card", "result", "listing", "record", "entry", "row", "article",
    "post", "book", "offer", "detail", "value", "link", "label", "tag",
})
"""Words that mark records or wrappers, not a field."""
# fmt: on
