//! Where a key sits in the TOML text, so that every error about a file
//! (the daemon's configuration, a file for `lbctl apply`) names the line and
//! the dotted key: for the toml crate's own errors (a byte span, turned into
//! the key whose name or value holds it) and for the checks that need
//! several values, made here, by the daemon at start-up or by lbctl (a key
//! path, looked up in the parsed document).

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::FileError;

/// One step of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A [`Seg::Key`].
pub fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

/// `vip[1].backends[0].weight`.
fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Whether `inner` lies within `outer`.
fn within(inner: &Range<usize>, outer: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The deepest key whose name or value holds the bytes `at`.
fn locate(table: &DeTable<'_>, at: &Range<usize>) -> Option<Vec<Seg>> {
    for (key, value) in table.iter() {
        let here = Seg::Key(key.get_ref().to_string());
        if within(at, &key.span()) {
            return Some(vec![here]);
        }
        if let Some(mut rest) = locate_value(value, at) {
            rest.insert(0, here);
            return Some(rest);
        }
    }
    None
}

fn locate_value(value: &toml::Spanned<DeValue<'_>>, at: &Range<usize>) -> Option<Vec<Seg>> {
    // Children first: a `[table]`'s own span may be just its header.
    match value.get_ref() {
        DeValue::Table(t) => {
            if let Some(p) = locate(t, at) {
                return Some(p);
            }
        }
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                if let Some(mut p) = locate_value(item, at) {
                    p.insert(0, Seg::Index(i));
                    return Some(p);
                }
            }
        }
        _ => {}
    }
    within(at, &value.span()).then(Vec::new)
}

/// A file's text and the name to report it by.
#[derive(Clone, Debug)]
pub struct Source {
    text: String,
    origin: String,
}

impl Source {
    /// The text of a file and the name errors report it by.
    pub fn new(text: &str, origin: &str) -> Self {
        Self {
            text: text.to_owned(),
            origin: origin.to_owned(),
        }
    }

    /// The error for a syntax error at bytes `span` (from the toml crate):
    /// it always has a place, even the very first byte of the file.
    pub fn syntax_error_at(
        &self,
        doc: &DeTable<'_>,
        span: Option<Range<usize>>,
        message: String,
    ) -> FileError {
        self.error_in(doc, span, message)
    }

    /// The error for bytes `span` of the text (from the toml crate's
    /// deserializer), naming the key that holds them.
    pub fn error_at(
        &self,
        doc: &DeTable<'_>,
        span: Option<Range<usize>>,
        message: String,
    ) -> FileError {
        // An error about the whole document (a missing top-level table)
        // has no line worth naming.
        let span = span.filter(|s| !(s.start == 0 && (s.end == 0 || s.end >= self.text.len())));
        self.error_in(doc, span, message)
    }

    fn error_in(
        &self,
        doc: &DeTable<'_>,
        span: Option<Range<usize>>,
        message: String,
    ) -> FileError {
        let key = span
            .as_ref()
            .and_then(|s| locate(doc, s))
            .map(|p| render_path(&p));
        FileError::Invalid {
            origin: self.origin.clone(),
            line: span.map(|s| line_of(&self.text, s.start)),
            key,
            message,
        }
    }

    /// Where the value at `path` sits, if the file spells it out (not
    /// when it took its default).
    pub fn span(&self, path: &[Seg]) -> Option<Range<usize>> {
        // Parsed again rather than kept: the document borrows the text, and
        // this only runs on the way to an error.
        let (doc, _) = DeTable::parse_recoverable(&self.text);
        let (first, rest) = path.split_first()?;
        let Seg::Key(first) = first else {
            return None;
        };
        let mut cur = doc.get_ref().get(first.as_str())?;
        for seg in rest {
            cur = match (seg, cur.get_ref()) {
                (Seg::Key(key), DeValue::Table(t)) => t.get(key.as_str())?,
                (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur.span())
    }

    /// The error about the value at `path`: its line if the file spells it
    /// out, and the key.
    pub fn error(&self, path: &[Seg], message: impl Into<String>) -> FileError {
        FileError::Invalid {
            origin: self.origin.clone(),
            line: self.span(path).map(|s| line_of(&self.text, s.start)),
            key: Some(render_path(path)),
            message: message.into(),
        }
    }
}
