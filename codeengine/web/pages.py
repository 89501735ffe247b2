"""The pages people use (display, terminal, ops console) and their static assets.

Everything is served from ``codeengine/web/static/`` by the services themselves: no build step,
no CDN. The files are read once when the routes are made, so a page costs no disk read. Every
answer carries the same security headers: a Content-Security-Policy that allows only this
origin (no inline script or style), no framing by other sites, no MIME sniffing and no
referrer, because the pages hold API keys in memory and must not leak them to anyone else.
"""

from __future__ import annotations

__all__ = [
    "SDK_NAME_PATTERN",
    "SECURITY_HEADERS",
    "STATIC_NAME_PATTERN",
    "page_route",
    "sdk_dir",
    "sdk_route",
    "static_route",
    "worker_route",
]

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web

from codeengine import __version__
from codeengine.code.errors import BadRequest
from codeengine.web.routes import PUBLIC, Route, path_param

STATIC_DIR = Path(__file__).parent / "static"
SDK_NAME_PATTERN = "^[a-z][a-z0-9]{0,40}\\.js$"
_SDK_NAME = re.compile(SDK_NAME_PATTERN)
STATIC_NAME_PATTERN = "^[a-z][a-z0-9-]{0,40}\\.(css|js|html)$"
_NAME = re.compile(STATIC_NAME_PATTERN)
_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
}

SECURITY_HEADERS = {
    # Images may be blob: URLs: the display page fetches its QR with the Authorization header
    # and shows the bytes, because an <img src> cannot carry a header.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
"""An app's web view shows the page at the top level, so no page needs to be framed."""

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _load(name: str) -> tuple[bytes, str]:
    path = STATIC_DIR / name
    return path.read_bytes(), _TYPES[path.suffix]


def _answer(body: bytes, content_type: str, cache: str) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache}
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


_HTML = {"text/html": {"schema": {"type": "string"}}}
_PAGE_TEXT = (
    "Public HTML; the page's script calls the API with the key the host hands it (never in the "
    "URL). Served with a Content-Security-Policy that allows only this origin."
)


def page_route(path: str, file: str, name: str, summary: str) -> Route:
    """``GET path`` answers the page ``file`` of the static folder."""
    body, content_type = _load(file)

    async def page(request: web.Request) -> web.Response:
        # Pages are tiny and change with each release: revalidate rather than cache.
        return _answer(body, content_type, "no-cache")

    page.__doc__ = f"The {name} page."
    return Route(
        "GET",
        path,
        page,
        name,
        scope=PUBLIC,
        summary=summary,
        description=_PAGE_TEXT,
        answers={"200": ("The page", _HTML)},
    )


def _check_names(names: Iterable[str], pattern: re.Pattern[str], kind: str) -> None:
    """ValueError for a name outside ``pattern``, before any file is read by it."""
    for name in names:
        if not pattern.match(name):
            raise ValueError(f"{kind} name {name!r} does not match {pattern.pattern}")


def _named_files(
    assets: dict[str, tuple[bytes, str]], pattern: re.Pattern[str], what: str
) -> Handler:
    """A handler answering ``{file}`` from ``assets`` (body, type): 400 for a name outside
    ``pattern``, 404 for one not among them."""

    async def named_file(request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if not pattern.match(name):
            raise BadRequest(f"the path does not name {what}")
        found = assets.get(name)
        if found is None:
            raise web.HTTPNotFound()
        return _answer(*found, "public, max-age=300")

    return named_file


def static_route(files: tuple[str, ...]) -> Route:
    """``GET /static/{file}`` answers one of ``files`` (CSS, JS); 404 for any other name."""
    _check_names(files, _NAME, "static asset")
    assets = {name: _load(name) for name in files}
    static = _named_files(assets, _NAME, "a static asset")
    static.__doc__ = "A page's stylesheet or script."

    assets_content = {
        kind: {"schema": {"type": "string"}} for kind in ("text/css", "text/javascript")
    }
    return Route(
        "GET",
        "/static/{file}",
        static,
        "static",
        scope=PUBLIC,
        summary="A page's stylesheet or script",
        parameters=(path_param("file", {"type": "string", "pattern": STATIC_NAME_PATTERN}),),
        answers={"200": ("The asset", assets_content)},
        problems=(400, 404),
    )


def sdk_dir(package: Path = Path(__file__).parent) -> Path:
    """The JavaScript verifier's modules: ``codeengine/web/sdkjs`` in an installed wheel
    (``pyproject.toml`` maps ``sdk/js/src`` there), else ``sdk/js/src`` of the checkout. One
    source: the page runs the very modules the SDK's tests check."""
    installed = package / "sdkjs"
    if installed.is_dir():
        return installed
    checkout = package.parents[1] / "sdk" / "js" / "src"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no JavaScript verifier: neither {installed} nor {checkout}")


def _sdk_modules() -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(sdk_dir().glob("*.js"))}


def sdk_route() -> Route:
    """``GET /static/sdk/{file}``: a module of the JavaScript verifier, for the terminal page to
    verify offline; 404 for any other name."""
    found = _sdk_modules()
    _check_names(found, _SDK_NAME, "SDK module")
    modules = {name: (body, "text/javascript") for name, body in found.items()}
    sdk_module = _named_files(modules, _SDK_NAME, "a module of the JavaScript verifier")
    sdk_module.__doc__ = "One module of the JavaScript verifier."

    return Route(
        "GET",
        "/static/sdk/{file}",
        sdk_module,
        "static_sdk",
        scope=PUBLIC,
        summary="A module of the JavaScript verifier (sdk/js/src), for offline checks",
        parameters=(path_param("file", {"type": "string", "pattern": SDK_NAME_PATTERN}),),
        answers={"200": ("The module", {"text/javascript": {"schema": {"type": "string"}}})},
        problems=(400, 404),
    )


def worker_route(path: str, file: str, page: str, assets: tuple[str, ...]) -> Route:
    """``GET path``: the service worker ``file`` that keeps ``page``, its ``assets`` and the
    JavaScript verifier's modules loadable offline.

    The worker is told the release and what to keep in a first line made here: its cache is
    named by the release and a digest of everything it keeps, so a release (or any changed
    file) makes the browser install the new worker, which drops the old cache.
    """
    modules = _sdk_modules()
    kept = [page, *(f"/static/{name}" for name in assets)]
    kept += [f"/static/sdk/{name}" for name in modules]
    digest = hashlib.sha256()
    for name in (file, *assets):
        digest.update((STATIC_DIR / name).read_bytes())
    for body in modules.values():
        digest.update(body)
    release = f"{__version__}-{digest.hexdigest()[:12]}"
    head = f"self.CE_RELEASE = {json.dumps(release)};\nself.CE_KEEP = {json.dumps(kept)};\n"
    body = head.encode() + (STATIC_DIR / file).read_bytes()

    async def worker(request: web.Request) -> web.Response:
        # Revalidated on every load: a new release must reach terminals at their next visit.
        return _answer(body, "text/javascript", "no-cache")

    worker.__doc__ = f"The service worker of {page}."
    return Route(
        "GET",
        path,
        worker,
        "page_worker",
        scope=PUBLIC,
        summary=f"The service worker that keeps {page} loadable offline",
        description="A script from this origin whose scope is `/pages/`; its cache is named "
        "by the release, so each release replaces it.",
        answers={"200": ("The worker", {"text/javascript": {"schema": {"type": "string"}}})},
    )
