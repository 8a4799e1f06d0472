//! The `Content-Type` of a fixed answer (placeholder or static route) that does not set one, as upstream's Go
//! server gives it: a ConfigMap key's extension from Go's built-in table (`mime.TypeByExtension`), else the
//! body's first 512 bytes read as Go's `http.DetectContentType` does (HTML, XML, PDF, images, archives, text).
//! Audio, video and font signatures are not recognised here (they fall to `application/octet-stream`).

/// Go's built-in extension table (`mime` package, lower-case, without the system's mime.types).
pub fn by_extension(key: &str) -> Option<&'static str> {
    let (_, ext) = key.rsplit_once('.')?;
    Some(match ext.to_ascii_lowercase().as_str() {
        "avif" => "image/avif",
        "css" => "text/css; charset=utf-8",
        "gif" => "image/gif",
        "htm" | "html" => "text/html; charset=utf-8",
        "jpeg" | "jpg" => "image/jpeg",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "wasm" => "application/wasm",
        "webp" => "image/webp",
        "xml" => "text/xml; charset=utf-8",
        _ => return None,
    })
}

/// Tags after which Go's sniffer (case-insensitively, leading whitespace skipped) says HTML, when the next
/// byte ends the tag.
const HTML_TAGS: [&[u8]; 17] = [
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
];

/// Exact prefixes and their types.
const MAGIC: [(&[u8], &str); 13] = [
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xFE\xFF", "text/plain; charset=utf-16be"),
    (b"\xFF\xFE", "text/plain; charset=utf-16le"),
    (b"\xEF\xBB\xBF", "text/plain; charset=utf-8"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    (b"\xFF\xD8\xFF", "image/jpeg"),
    (b"BM", "image/bmp"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1F\x8B\x08", "application/x-gzip"),
    (b"\x00asm", "application/wasm"),
];

/// Go's `http.DetectContentType`, for the signatures listed in the module docs.
pub fn detect(body: &[u8]) -> &'static str {
    let data = &body[..body.len().min(512)];
    let start = data.iter().position(|b| !matches!(b, b'\t' | b'\n' | 0x0C | b'\r' | b' ')).unwrap_or(data.len());
    let text = &data[start..];
    for tag in HTML_TAGS {
        let ends_tag = text.get(tag.len()).is_some_and(|b| *b == b' ' || *b == b'>');
        if ends_tag && text[..tag.len()].eq_ignore_ascii_case(tag) {
            return "text/html; charset=utf-8";
        }
    }
    if text.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    if let Some((_, t)) = MAGIC.iter().find(|(m, _)| data.starts_with(m)) {
        return t;
    }
    if data.len() >= 14 && data.starts_with(b"RIFF") && &data[8..14] == b"WEBPVP" {
        return "image/webp";
    }
    if data.starts_with(b"\x00\x00\x01\x00") || data.starts_with(b"\x00\x00\x02\x00") {
        return "image/x-icon";
    }
    let binary = |b: &u8| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F);
    if data.iter().any(binary) { "application/octet-stream" } else { "text/plain; charset=utf-8" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_sniffed_as_go_does() {
        assert_eq!(detect(b"  <!doctype html><p>x"), "text/html; charset=utf-8");
        assert_eq!(detect(b"<h1>Loading...</h1>"), "text/html; charset=utf-8");
        assert_eq!(detect(b"<hr>"), "text/plain; charset=utf-8", "not one of Go's tags");
        assert_eq!(detect(b"<?xml version=\"1.0\"?><a/>"), "text/xml; charset=utf-8");
        assert_eq!(detect(b"{\"status\": \"warming up\"}"), "text/plain; charset=utf-8");
        assert_eq!(detect(b"\x89PNG\x0D\x0A\x1A\x0A...."), "image/png");
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(detect(b"\x00\x01\x02binary"), "application/octet-stream");
        assert_eq!(detect(b"teapot"), "text/plain; charset=utf-8", "the Go add-on's answer to a bare body");
    }

    #[test]
    fn extensions_come_from_gos_builtin_table() {
        assert_eq!(by_extension("index.HTML"), Some("text/html; charset=utf-8"));
        assert_eq!(by_extension("feed.xml"), Some("text/xml; charset=utf-8"));
        assert_eq!(by_extension("logo.png"), Some("image/png"));
        assert_eq!(by_extension("notes.txt"), None, "not built into Go: sniffed instead");
        assert_eq!(by_extension("index"), None);
    }
}
