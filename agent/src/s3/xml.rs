//! Building S3's XML responses and formatting its dates. Responses are
//! small, fixed shapes, written directly with escaping; nothing here parses.

/// Escape text for an XML element.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters cannot appear in XML 1.0 text.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                out.push_str(&format!("&#x{:X};", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// A small XML writer: `elem("Key", value)` and nested sections.
#[derive(Default)]
pub struct Xml {
    pub buf: String,
}

impl Xml {
    pub(crate) fn new(root: &str) -> Xml {
        Xml {
            buf: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            ),
        }
    }
    pub(crate) fn open(&mut self, name: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }
    pub(crate) fn close(&mut self, name: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }
    pub(crate) fn elem(&mut self, name: &str, value: &str) -> &mut Self {
        self.open(name);
        self.buf.push_str(&escape(value));
        self.close(name)
    }
    pub(crate) fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.buf
    }
}

pub use hangar_common::date::iso8601;

/// `Wed, 25 Nov 2026 15:45:05 GMT`, as HTTP headers show dates.
pub(crate) fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_like_aws() {
        // 2026-11-25T15:45:05Z
        let ms = 1_795_621_505_000;
        assert_eq!(iso8601(ms), "2026-11-25T15:45:05.000Z");
        assert_eq!(http_date(ms), "Wed, 25 Nov 2026 15:45:05 GMT");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;&#x1;");
    }
}
