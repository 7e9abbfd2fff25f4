"""/docs: Swagger UI over the app's OpenAPI, its files served from here when the serve extra has them."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, for /docs
CDN = "https://cdn.jsdelivr.net"


def add_docs(app: FastAPI) -> str:
    """Add GET /docs (and its files, when installed: no network needed); returns the page's Content-Security-Policy."""
    swagger = _swagger_ui_folder()
    if swagger is None:
        page = _docs_page(app, f"{CDN}/npm/swagger-ui-dist@5")
        sources = CDN
    else:
        app.mount(DOCS_ASSETS, StaticFiles(directory=swagger), name="docs-assets")
        page = _docs_page(app, DOCS_ASSETS)
        sources = "'self'"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page.body)

    return docs_csp(page.body, sources)


def docs_csp(html: bytes, sources: str = "'self'") -> str:
    """The CSP of /docs: Swagger UI's files from `sources`, and its one inline script by its hash."""
    scripts = re.findall(rb"<script>(.*?)</script>", html, re.DOTALL)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return (f"default-src 'none'; script-src {sources} {hashes}; style-src {sources} 'unsafe-inline'; "
            f"img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")


def _swagger_ui_folder() -> Path | None:
    """Swagger UI's script and style as installed with the serve extra (swagger-ui-bundle-v2), if they are."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # FastAPI's own /docs then, which loads them from a CDN
        return None
    folder = Path(swagger_ui_path)
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _docs_page(app: FastAPI, assets: str) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url=app.openapi_url, title="mnistlab API",
                               swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                               swagger_css_url=f"{assets}/swagger-ui.css",
                               swagger_favicon_url=f"{assets}/favicon-32x32.png")
