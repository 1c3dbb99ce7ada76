"""The standalone extraction runtime: standard library plus selectolax, specs as plain dicts.

``scrapers.render`` copies these modules (with ``scrapers/errors.py``) into generated
scraper files, so they must not import pydantic or anything else of Mendline's.
"""

from scrapers.runtime.decode import decode_body
from scrapers.runtime.engine import Plan, compile_spec, extract, next_page_url

__all__ = ["Plan", "compile_spec", "decode_body", "extract", "next_page_url"]
