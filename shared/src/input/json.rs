//! The JSON cursor the Lambda event's reader ([`super::batch`]) reads with: one pass over the
//! body, strings borrowed unless they hold escapes, every value checked against the JSON grammar
//! (RFC 8259) as it is read or skipped.
//!
//! It exists for the one big, hot input: a full batch is 6 MB of JSON, and the reader needs a few
//! fields of each record, leniently (a field of the wrong type is "absent", never an error for the
//! batch). Everything else in the workspace reads JSON with `serde_json`. The tests hold the cursor
//! to `serde_json` on generated documents.

use std::borrow::Cow;

/// Nesting deeper than this, below the value the cursor reads or skips, is refused. (serde_json
/// refuses more than 127 levels in the whole document; the event's reader counts from each field
/// it skips, so it may accept a few levels more, never fewer.)
const MAX_DEPTH: usize = 128;

/// A position in a JSON text. Every method answers `None` when the text at the cursor is not what
/// it reads; [`Cursor::position`] then says where.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The byte offset of the cursor.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, without taking it.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.bytes().len()
    }

    /// A string: borrowed when it has no escape, unescaped into an owned string when it has.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        let len = plain_len(self.bytes().get(start..)?);
        self.finish_string(start, start + len)
    }

    /// A long string whose content the caller checks itself (base64 data, which its decoder
    /// refuses when it holds anything outside its alphabet, control characters included): its end
    /// is found with a SIMD search, and a string without escapes is not scanned for control
    /// characters; the caller asks [`has_control`] when it needs to know.
    pub(crate) fn long_string_unchecked(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + memchr::memchr2(b'"', b'\\', self.bytes().get(start..)?)?;
        if self.bytes()[end] == b'\\' && has_control(self.bytes().get(start..end)?) {
            return None;
        }
        self.finish_string(start, end)
    }

    /// The string from `start`, whose plain run ends at `end` (a quote, an escape, or a control
    /// character, which is refused).
    fn finish_string(&mut self, start: usize, end: usize) -> Option<Cow<'a, str>> {
        let plain = self.text.get(start..end)?;
        match *self.bytes().get(end)? {
            b'"' => {
                self.pos = end + 1;
                Some(Cow::Borrowed(plain))
            }
            b'\\' => {
                self.pos = end;
                let mut out = String::with_capacity(plain.len() + 16);
                out.push_str(plain);
                self.unescape_rest(&mut out)?;
                Some(Cow::Owned(out))
            }
            _ => None, // a raw control character
        }
    }

    /// The rest of a string from an escape on, appended to `out`; the cursor ends after its quote.
    fn unescape_rest(&mut self, out: &mut String) -> Option<()> {
        loop {
            match *self.bytes().get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(());
                }
                b'\\' => {
                    let escaped = *self.bytes().get(self.pos + 1)?;
                    self.pos += 2;
                    out.push(match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    });
                }
                b if b < 0x20 => return None,
                _ => {
                    // A run up to the next quote or escape, copied whole (it is valid UTF-8: the
                    // text is a `str` and the run ends at an ASCII byte).
                    let rest = self.bytes().get(self.pos..)?;
                    let run = memchr::memchr2(b'"', b'\\', rest)?;
                    let chunk = self.text.get(self.pos..self.pos + run)?;
                    if has_control(chunk) {
                        return None;
                    }
                    out.push_str(chunk);
                    self.pos += run;
                }
            }
        }
    }

    /// The character of a `\u` escape (the cursor after the `u`), a surrogate pair whole.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes().get(self.pos..self.pos + 2)? != b"\\u" {
                    return None; // a lone leading surrogate
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            }
            0xDC00..=0xDFFF => None, // a lone trailing surrogate
            c => char::from_u32(c),
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// The members of an object, each key handed to `f` with the cursor at its value; `f` must
    /// take the value. `None` when the next value is not an object.
    pub(crate) fn members(
        &mut self,
        mut f: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.delimited(b'{', b'}', |c| {
            let key = c.string()?;
            c.eat(b':')?;
            f(c, key)
        })
    }

    /// The elements of an array, each handed to `f` with the cursor at it; `f` must take it.
    /// `None` when the next value is not an array.
    pub(crate) fn elements(&mut self, f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(b'[', b']', f)
    }

    /// `open`, items separated by commas (each taken by `item`), `close`.
    fn delimited(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.pos += 1,
                c if c == close => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips one value, checking it against the grammar.
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.skip(0)
    }

    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' if depth < MAX_DEPTH => self.members(|c, _| c.skip(depth + 1)),
            b'[' if depth < MAX_DEPTH => self.elements(|c| c.skip(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.bytes().get(self.pos..self.pos + word.len())? == word).then(|| self.pos += word.len())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes().get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number, checked against the grammar.
    fn number(&mut self) -> Option<()> {
        if self.bytes().get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes().get(self.pos)? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes().get(self.pos) == Some(&b'.') {
            self.pos += 1;
            (self.digits() > 0).then_some(())?;
        }
        if let Some(b'e' | b'E') = self.bytes().get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes().get(self.pos) {
                self.pos += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }
}

/// The length of the plain run at the start of `s`: the bytes before the first quote, escape or
/// control character (which a JSON string may not hold raw), or all of them. Both searches run many bytes at a time: the end with
/// `memchr`, and the check for control characters without an early exit, which the compiler
/// turns into SIMD; only a string that holds one is searched again, byte by byte. Tested against
/// the byte-by-byte `position`.
fn plain_len(s: &[u8]) -> usize {
    let end = memchr::memchr2(b'"', b'\\', s).unwrap_or(s.len());
    if has_control(&s[..end]) {
        s.iter().position(|&b| b < 0x20).unwrap_or(end)
    } else {
        end
    }
}

/// Whether `s` holds a control character (below U+0020), which a JSON string may not hold raw.
/// (Written without an early exit, so the compiler checks many bytes at a time.)
pub(crate) fn has_control(s: impl AsRef<[u8]>) -> bool {
    s.as_ref()
        .iter()
        .fold(false, |found, &b| found | (b < 0x20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a whole document with the cursor: the value of every string, in order, or `None`.
    fn strings(text: &str) -> Option<Vec<String>> {
        fn walk(c: &mut Cursor<'_>, out: &mut Vec<String>, depth: usize) -> Option<()> {
            match c.peek()? {
                b'"' => out.push(c.string()?.into_owned()),
                b'{' if depth < MAX_DEPTH => c.members(|c, key| {
                    out.push(key.into_owned());
                    walk(c, out, depth + 1)
                })?,
                b'[' if depth < MAX_DEPTH => c.elements(|c| walk(c, out, depth + 1))?,
                b'{' | b'[' => return None,
                _ => c.skip_value()?,
            }
            Some(())
        }
        let mut c = Cursor::new(text);
        let mut out = Vec::new();
        walk(&mut c, &mut out, 0)?;
        c.at_end().then_some(out)
    }

    /// serde_json's reading of the same document, as [`strings`] reports it.
    fn serde_strings(text: &str) -> Option<Vec<String>> {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::String(s) => out.push(s.clone()),
                serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                    out.push(k.clone());
                    walk(v, out)
                }),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let mut out = Vec::new();
        walk(&value, &mut out);
        Some(out)
    }

    #[test]
    fn reads_what_serde_reads() {
        for doc in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e+3}"#,
            r#"  [ ]  "#,
            r#"{}"#,
            r#""héllo wörld""#,
            r#"[0, -0, 1.25, 12E4, 3e-2]"#,
            r#"["a\"b\\c\/d\b\f\n\r\t", "\u00e9\u2603\ud83d\ude00", "x\u0000y"]"#,
        ] {
            assert_eq!(strings(doc), serde_strings(doc), "{doc}");
            assert!(strings(doc).is_some(), "{doc}");
        }
    }

    #[test]
    fn refuses_what_serde_refuses() {
        for doc in [
            "\"tab\there\"",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"tru"#,
            r#"{"a":1} x"#,
            "\"\u{0}\"",
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\u12""#,
            r#""abc"#,
            "\"a\\",
        ] {
            assert_eq!(strings(doc), None, "{doc}");
            assert_eq!(serde_strings(doc), None, "{doc}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(strings(&deep), None);
    }

    proptest! {
        /// The plain run is what a byte-by-byte search finds.
        #[test]
        fn plain_runs_end_where_a_byte_search_says(s in prop::collection::vec(
            prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20, 1 => 0x80u8..=0xff],
            0..70,
        )) {
            let simple = s
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(s.len());
            prop_assert_eq!(plain_len(&s), simple);
        }
    }

    #[test]
    fn plain_strings_are_borrowed() {
        let mut c = Cursor::new(r#""plain" "esc\naped""#);
        assert!(matches!(c.string(), Some(Cow::Borrowed("plain"))));
        assert!(matches!(c.string(), Some(Cow::Owned(s)) if s == "esc\naped"));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]
        /// Documents of any characters and punctuation: the cursor accepts what serde_json
        /// accepts, and refuses what it refuses (but a number too large for an `f64`, which the
        /// cursor only skips).
        #[test]
        fn agrees_with_serde_on_any_text(doc in r#"[ \[\]{}":,0-9a-z.eE+\-\\/u\u{e9}\u{1}]{0,40}"#) {
            let serde = serde_json::from_str::<serde_json::Value>(&doc);
            let out_of_range = serde.as_ref().is_err_and(|e| e.to_string().contains("out of range"));
            if !out_of_range {
                prop_assert_eq!(strings(&doc).is_some(), serde.is_ok(), "{}", doc);
            }
        }

        /// Every document serde_json writes, escapes included, is read as serde_json reads it.
        #[test]
        fn reads_every_document_serde_writes(value in json_value(), pretty in any::<bool>()) {
            let doc = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            prop_assert_eq!(strings(&doc), serde_strings(&doc));
            prop_assert!(strings(&doc).is_some());
        }
    }
}
