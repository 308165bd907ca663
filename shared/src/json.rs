//! A small JSON cursor for the hot paths: the Lambda event, the envelope and the order payload;
//! and the two writers the confirmation's template data needs.
//!
//! `serde_json` reads any document correctly, but a full batch is 6,000 records of a dozen fields
//! each, and its per-call machinery (visitors, field identifiers, error positions) costs more than
//! the bytes. This cursor reads the common case directly: strings without escapes, borrowed, and
//! every other value checked against the JSON grammar as it is skipped.
//!
//! It is strict, never lenient: whatever it accepts is valid JSON that `serde_json` reads the same
//! way. Anything outside its fast case (an escape in a string, a deep nesting, a value it cannot
//! vouch for) makes it answer `None`, and the caller reads the same bytes with `serde_json`, which
//! gives the exact result or the exact error. So `None` means "ask `serde_json`", never "invalid".

/// Nesting deeper than this is left to `serde_json` (its own limit is 128).
const MAX_DEPTH: usize = 100;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// A position in a JSON text.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text` (its UTF-8 checked once, here, by its type).
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    /// The text's bytes.
    #[inline]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&c) = self.bytes().get(self.pos) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// The next byte that is not whitespace, without taking it.
    #[inline]
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.pos).copied()
    }

    /// Takes `c`, after whitespace, or answers `None`.
    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// The position of the next value (after whitespace), for [`Cursor::slice`].
    pub(crate) fn mark(&mut self) -> usize {
        self.skip_ws();
        self.pos
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.bytes().len()
    }

    /// A string without escapes, borrowed.
    #[inline]
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = plain_run(self.bytes(), start);
        if self.bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// The content of a long string that the caller checks itself (base64 data, whose decoder
    /// takes only its alphabet): found with a SIMD search for its end. Control characters are
    /// not looked for: see [`is_plain`].
    #[inline]
    pub(crate) fn long_str_unchecked(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + memchr::memchr2(b'"', b'\\', self.bytes().get(start..)?)?;
        if self.bytes().get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// The members of an object, each key handed to `f` with the cursor at its value; `f` must
    /// take the value. Answers `None` when the next value is not an object.
    #[inline]
    pub(crate) fn members(
        &mut self,
        mut f: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.delimited(b'{', b'}', |c| {
            let key = c.str()?;
            c.eat(b':')?;
            f(c, key)
        })
    }

    /// The elements of an array, each handed to `f` with the cursor at it; `f` must take it.
    /// Answers `None` when the next value is not an array.
    #[inline]
    pub(crate) fn elements(&mut self, f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.delimited(b'[', b']', f)
    }

    /// `open`, items separated by commas (each taken by `item`), `close`.
    #[inline]
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

    /// Takes `text` exactly as it is next (whitespace included), or answers `None`.
    #[inline]
    pub(crate) fn eat_exact(&mut self, text: &str) -> Option<()> {
        self.literal(text.as_bytes())
    }

    /// The position, for [`Cursor::slice`] and [`Cursor::rewind`].
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Moves back to `pos`, a position this cursor was at.
    pub(crate) fn rewind(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// The text between two positions.
    pub(crate) fn slice(&self, from: usize, to: usize) -> Option<&'a str> {
        self.text.get(from..to)
    }

    /// Skips one value, checking it against the grammar.
    #[inline]
    pub(crate) fn skip_value(&mut self) -> Option<()> {
        self.skip(0)
    }

    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.str().map(drop),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.members(|c, _| c.skip(depth + 1))
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.elements(|c| c.skip(depth + 1))
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes().get(self.pos..self.pos + word.len())? == word {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes().get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number, checked against the grammar; answers its text.
    fn number(&mut self) -> Option<()> {
        self.skip_ws();
        let start = self.pos;
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
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.bytes().get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes().get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        (self.pos > start).then_some(())
    }
}

/// The bytes of `w` (eight, little-endian) below `k`, flagged in their high bit. The lowest flag
/// is exact; a borrow may also flag bytes above a true one, so "any" and "the first" are exact.
#[inline]
pub(crate) fn bytes_below(w: u64, k: u8) -> u64 {
    w.wrapping_sub(LO * u64::from(k)) & !w & HI
}

/// The bytes of `w` equal to `k`, flagged as [`bytes_below`] flags them.
#[inline]
pub(crate) fn bytes_equal(w: u64, k: u8) -> u64 {
    bytes_below(w ^ (LO * u64::from(k)), 1)
}

/// The bytes of `w` that end a plain string run, flagged as [`bytes_below`] flags them.
#[inline]
fn stops(w: u64) -> u64 {
    bytes_equal(w, b'"') | bytes_equal(w, b'\\') | bytes_below(w, 0x20)
}

/// From `start`, the index of the first byte that ends a plain string run (a quote, a backslash
/// or a control character), or the length. Sixteen, then eight bytes at a time.
#[inline]
fn plain_run(s: &[u8], start: usize) -> usize {
    let mut i = start;
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        let (lo, hi) = chunk.split_at(8);
        let (lo, hi) = (
            stops(u64::from_le_bytes(lo.try_into().unwrap_or_default())),
            stops(u64::from_le_bytes(hi.try_into().unwrap_or_default())),
        );
        if lo | hi != 0 {
            let at = if lo != 0 {
                lo.trailing_zeros()
            } else {
                64 + hi.trailing_zeros()
            };
            return i + (at / 8) as usize;
        }
        i += 16;
    }
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let stop = stops(u64::from_le_bytes(*chunk));
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Appends `s` as a JSON string, as `serde_json` writes it: copied as it is when it needs no
/// escape (the common case), escaped by `serde_json` when it does.
pub fn write_str(out: &mut String, s: &str) {
    if plain_run(s.as_bytes(), 0) == s.len() {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(escaped) = serde_json::to_string(s) {
        out.push_str(&escaped);
    }
}

/// Appends `v` as a JSON number.
pub fn write_u64(out: &mut String, v: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = v;
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Whether `s` is a plain JSON string's content: no quote, backslash or control character. For
/// content found by [`Cursor::long_str_unchecked`].
pub(crate) fn is_plain(s: &str) -> bool {
    plain_run(s.as_bytes(), 0) == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Skips a whole document with the cursor.
    fn skim(text: &str) -> Option<&str> {
        let mut c = Cursor::new(text);
        let start = c.mark();
        c.skip_value()?;
        let raw = c.slice(start, c.position())?;
        c.at_end().then_some(raw)
    }

    #[test]
    fn accepts_what_serde_accepts_in_its_fast_case() {
        for doc in [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":-0.5e+3}"#,
            r#"  [ ]  "#,
            r#"{}"#,
            r#""héllo wörld, ünïcode""#,
            r#"[0, -0, 1.25, 12E4, 3e-2]"#,
        ] {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(doc).is_ok(),
                "{doc}"
            );
            assert_eq!(skim(doc), Some(doc.trim()), "{doc}");
        }
    }

    #[test]
    fn leaves_the_rest_to_serde() {
        for doc in [
            r#"{"a":"x\"y"}"#, // an escape: valid, but not the fast case
            "\"tab\there\"",   // a raw control character: invalid
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a" 1}"#,
            r#"tru"#,
            r#"{"a":1} x"#,
            "\"\u{0}\"",
        ] {
            assert_eq!(skim(doc), None, "{doc}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(skim(&deep), None);
    }

    #[test]
    fn exact_text_is_taken_whole_or_not_at_all() {
        let mut c = Cursor::new(r#"{"a": "x" , "b":1}"#);
        let start = c.mark();
        assert_eq!(c.eat_exact(r#"{"a": "#), Some(()));
        assert_eq!(c.str(), Some("x"));
        let after = c.position();
        // Whitespace is text like any other: it must be there, as it was.
        assert_eq!(c.eat_exact(r#", "b":"#), None);
        assert_eq!(c.position(), after, "a mismatch takes nothing");
        assert_eq!(c.eat_exact(r#" , "b":"#), Some(()));
        assert_eq!(c.slice(start, after), Some(r#"{"a": "x""#));
        c.rewind(start);
        c.skip_value().unwrap();
        assert_eq!(c.slice(start, c.position()), Some(r#"{"a": "x" , "b":1}"#));
        assert_eq!(c.eat_exact("}"), None, "past the end");
    }

    proptest! {
        /// Strings and numbers are written as serde_json writes them.
        #[test]
        fn writes_as_serde_writes(s in "[a-zé\"\\\\\u{1}\u{7f}/ ]{0,12}", v in any::<u64>()) {
            let mut out = String::new();
            write_str(&mut out, &s);
            prop_assert_eq!(&out, &serde_json::to_string(&s).unwrap());
            out.clear();
            write_u64(&mut out, v);
            prop_assert_eq!(out, v.to_string());
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        for (text, end) in [
            (&b"abcdefghijklmnop\"x"[..], 16),
            (b"abc\\defghijk", 3),
            (b"abcdefg\x01", 7),
            (b"\xc3\xa9abcdefgh\"", 10),
            (b"\x01\"", 0),
            (b"abcdefgh\x7f\xff\"", 10),
            (b"short", 5),
            (b"abcdefghijklmnopqrstuvwxyz0123\"", 30),
            (b"abcdefghijklmnopqrstu\x1f", 21),
            (b"abcdefghijklmno\\pqrstu", 15),
            (b"abcdefgh\"ijklmnopqrstu", 8),
        ] {
            assert_eq!(plain_run(text, 0), end, "{text:?}");
        }
    }

    proptest! {
        /// Whatever the cursor accepts, serde_json accepts with the same raw text.
        #[test]
        fn never_accepts_what_serde_rejects(doc in "[ \\[\\]{}\":,0-9a-z.eE+\\-\\\\\u{e9}\u{1}]{0,40}") {
            if let Some(raw) = skim(&doc) {
                let value: &serde_json::value::RawValue = serde_json::from_str(&doc).unwrap();
                prop_assert_eq!(value.get(), raw);
            }
        }

        /// Every serde_json value printed without escapes is read by the cursor.
        #[test]
        fn reads_every_plain_document(value in json_value()) {
            let doc = serde_json::to_string(&value).unwrap();
            if !doc.contains('\\') {
                prop_assert_eq!(skim(&doc), Some(doc.as_str()));
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "[a-zé ]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{0,6}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
