"""The interactive docs, served by qsite itself: Swagger UI at /docs, GraphiQL at /graphql.

Both load their scripts and styles from ``service/api/static/`` (vendored from the npm
packages named in ``static/VENDORED.md``, refreshed with ``make vendor-docs``), never from a
CDN: a site's intranet or a command centre without internet still gets working pages.
"""

from __future__ import annotations

import json
from pathlib import Path

from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).resolve().parent / "static"
ASSETS_PATH = "/docs/assets"

# What GraphiQL opens with: how to authenticate, then a first query to run.
GRAPHIQL_DOCUMENT = """\
# qsite GraphQL. Staff use a bearer token:
# 1. Run Login below (Variables tab:
#    {"username": "...", "password": "..."});
#    this page then sends the accessToken
#    as "Authorization: Bearer <token>".
# 2. Or set it in the Headers tab yourself:
#    {"Authorization": "Bearer <accessToken>"}
#    (integrations: {"X-API-Key": "qsk_..."}).
# The apps' documents: graphql/operations/.

mutation Login($username: String!, $password: String!) {
  login(username: $username, password: $password) {
    tokens { accessToken expiresIn role siteIds }
    retryAfter
    userErrors { code message }
  }
}

query Sites {
  sites(first: 20) {
    edges { node { id code name status } }
  }
}
"""

_GRAPHIQL_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>qsite GraphiQL</title>
  <link rel="icon" href="{assets}/swagger-ui/favicon-32x32.png">
  <link rel="stylesheet" href="{assets}/graphiql/graphiql.min.css">
  <style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
  <script src="{assets}/react/react.production.min.js"></script>
  <script src="{assets}/react/react-dom.production.min.js"></script>
  <script src="{assets}/graphiql/graphiql.min.js"></script>
</head>
<body>
  <div id="graphiql">Loading GraphiQL...</div>
  <script>
    const endpoint = {endpoint};
    let token = null;  // from a Login or RefreshToken answer on this page
    async function fetcher(params, options) {{
      const headers = {{"Content-Type": "application/json", "Accept": "application/json", ...((options && options.headers) || {{}})}};
      if (token && !Object.keys(headers).some((h) => h.toLowerCase() === "authorization")) {{
        headers["Authorization"] = "Bearer " + token;
      }}
      const response = await fetch(endpoint, {{method: "POST", headers, body: JSON.stringify(params), credentials: "same-origin"}});
      const body = await response.json();
      const data = body && body.data;
      const tokens = data && ((data.login && data.login.tokens) || (data.refreshToken && data.refreshToken.tokens));
      if (tokens && tokens.accessToken) token = tokens.accessToken;
      return body;
    }}
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {{
        fetcher,
        defaultQuery: {document},
        defaultHeaders: "{{}}",
        defaultEditorToolsVisibility: "headers",
        shouldPersistHeaders: false,
      }})
    );
  </script>
</body>
</html>
"""


def graphiql_html(endpoint: str = "/graphql", document: str = GRAPHIQL_DOCUMENT) -> str:
    """The GraphiQL page (assets from ``ASSETS_PATH``); the GraphQL controller serves it."""
    return _GRAPHIQL_PAGE.format(assets=ASSETS_PATH, endpoint=json.dumps(endpoint), document=json.dumps(document))


def mount_graphiql(controller: type) -> type:
    """Make the GraphQL controller serve this page instead of Strawberry's (which loads from CDNs)."""
    controller.graphql_ide_html = graphiql_html()  # type: ignore[attr-defined]
    return controller


def swagger_plugin() -> SwaggerRenderPlugin:
    assets = f"{ASSETS_PATH}/swagger-ui"
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{assets}/swagger-ui-bundle.js",
        css_url=f"{assets}/swagger-ui.css",
        standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
    )


# The files change only with a qsite release; an hour of caching spares poor site networks.
assets_router = create_static_files_router(
    path=ASSETS_PATH,
    directories=[STATIC_DIR],
    include_in_schema=False,
    cache_control=CacheControlHeader(max_age=3600, public=True),
    name="docs_assets",
)
