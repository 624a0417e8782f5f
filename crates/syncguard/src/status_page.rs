//! `GET /`: a small self-contained status page (one HTML file with its CSS and vanilla JS,
//! compiled into the binary: no CDN, no build step). The page fetches `/status`, `/health`
//! and `/events` from the same origin every 2 s and shows the cluster (this node and its
//! peer), the signing strip (the last heights signed / missed / not yet known, with this
//! node's role changes flagged at their heights: `signing.strip` of `/status`, see
//! [`crate::signing_strip`]), every health check, the heights, the epoch and the event
//! timeline, newest first.
//!
//! The page inserts every value as text, never as markup, and the Content-Security-Policy
//! forbids anything from elsewhere: a hostile string in a reason or a node id stays text.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const HTML: &str = include_str!("assets/status.html");

/// Same-origin fetches only; inline style and script are the page's own.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        HTML,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_status_page_is_self_contained() {
        for banned in [
            "http://", "https://", "//cdn", "src=\"", "href=\"", "@import", "url(",
        ] {
            assert!(!HTML.contains(banned), "the page must not load `{banned}`");
        }
        // Data goes in as text only.
        assert!(!HTML.contains("innerHTML"));
        assert!(!HTML.contains("outerHTML"));
        assert!(!HTML.contains("insertAdjacentHTML"));
        assert!(!HTML.contains("document.write"));
        for path in ["\"/status\"", "\"/health\"", "\"/events\""] {
            assert!(HTML.contains(path), "the page fetches {path}");
        }
        // The strip has a legend, a text alternative and a title on every cell.
        for needle in [
            "class=\"legend\"",
            "role=\"img\"",
            "aria-label",
            "col.title =",
        ] {
            assert!(HTML.contains(needle), "the strip lacks {needle}");
        }
        // Small: one file, well under what a phone fetches without noticing.
        assert!(HTML.len() < 24 * 1024, "{} bytes", HTML.len());
    }
}
