//! GraphiQL, served whole from the binary. Its scripts and styles are vendored under
//! `assets/graphiql` (npm's `graphiql` 4.1.2, `react` and `react-dom` 18.3.1, as
//! published), so the page works where the browser has no internet access, and its
//! version changes only with ours.

use std::sync::LazyLock;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{GRAPHQL_PATH, WS_PATH};

/// Where the assets are served. The version is in the path, so a browser may keep them
/// for good: a new GraphiQL comes under a new path.
pub const ASSETS_PATH: &str = "/graphiql/4.1.2";

struct Asset {
    file: &'static str,
    media_type: &'static str,
    body: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        file: "react.production.min.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/graphiql/react.production.min.js"),
    },
    Asset {
        file: "react-dom.production.min.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    },
    Asset {
        file: "graphiql.min.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/graphiql/graphiql.min.js"),
    },
    Asset {
        file: "graphiql.min.css",
        media_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/graphiql/graphiql.min.css"),
    },
];

static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("../../assets/graphiql/page.html")
        .replace("{assets}", ASSETS_PATH)
        .replace("{graphql}", GRAPHQL_PATH)
        .replace("{ws}", WS_PATH)
});

pub fn page() -> Html<&'static str> {
    Html(PAGE.as_str())
}

/// One of the page's scripts or styles; 404 for any other name.
pub fn asset(file: &str) -> Response {
    match ASSETS.iter().find(|asset| asset.file == file) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.media_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
