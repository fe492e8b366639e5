//! The `--report` page: one self-contained HTML file (no network fetches) whose embedded
//! script draws the charts as inline SVG from the run's JSON, which the page carries in a
//! `<script type="application/json" id="kvcache-data">` element: the same document that
//! `--output` writes, so anything reading the page can check what it shows.

use crate::report::Summary;

/// The page, with `{{TITLE}}`, `{{VERSION}}` and `{{DATA}}` to fill in.
const TEMPLATE: &str = include_str!("report.html");

/// Escapes text for HTML element content.
fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report page for `summary`, embedding `json` (its serialization).
pub fn page(summary: &Summary, json: &str) -> String {
    let title = match &summary.compared_with {
        Some(other) => format!("{} compared with {}", summary.label, other.label),
        None => summary.label.clone(),
    };
    // '<' only occurs inside JSON strings, where \u003c means the same: the data can then
    // never close its script element.
    let data = json.replace('<', "\\u003c");
    TEMPLATE
        .replace("{{TITLE}}", &escape_html(&title))
        .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"))
        .replace("{{DATA}}", &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_cannot_end_its_script_element() {
        let json = r#"{"first_error":"</script><script>alert(1)</script>"}"#;
        let escaped = json.replace('<', "\\u003c");
        let v: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(v["first_error"], "</script><script>alert(1)</script>");
        assert!(!escaped.contains("</"));
        assert_eq!(TEMPLATE.matches("{{DATA}}").count(), 1);
    }

    #[test]
    fn the_page_fetches_nothing() {
        let lower = TEMPLATE.to_ascii_lowercase();
        for banned in [
            " src=",
            " href=",
            "url(",
            "@import",
            "fetch(",
            "xmlhttprequest",
            "<link",
            "<img",
            "<iframe",
            "websocket",
        ] {
            assert!(!lower.contains(banned), "the template contains {banned}");
        }
    }
}
