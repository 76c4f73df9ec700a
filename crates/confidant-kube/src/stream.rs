//! A YAML stream cut into its documents, each with its original text, so that the documents
//! `generate` leaves alone are written back byte for byte (comments, order, quoting and all).

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The text from its first line to the line before the next `---` (or the end); the
    /// leading `---` line itself, if any, is in [`Document::separator`].
    pub text: String,
    /// The `---` line that opened it (with anything after the marker), or `None` for a first
    /// document without one.
    pub separator: Option<String>,
}

impl Document {
    /// Whether the document has no content (only blanks and comments).
    pub fn is_blank(&self) -> bool {
        self.text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
    }
}

/// Whether `line` starts a new document: `---` at column 0, alone or followed by a blank.
fn is_separator(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// Cuts `text` into documents at `---` lines. Joining each document's separator (plus a line
/// break) and text gives `text` back.
pub fn split(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = Document {
        text: String::new(),
        separator: None,
    };
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if is_separator(bare) {
            docs.push(std::mem::replace(
                &mut current,
                Document {
                    text: String::new(),
                    separator: Some(line.to_string()),
                },
            ));
        } else {
            current.text.push_str(line);
        }
    }
    docs.push(current);
    // A stream that starts with `---` has an empty document before it: drop that one (its
    // separator belongs to the next), keeping the round trip exact.
    if docs.len() > 1 && docs[0].separator.is_none() && docs[0].text.is_empty() {
        docs.remove(0);
    }
    docs
}

/// Joins documents back into one stream.
pub fn join(docs: &[Document]) -> String {
    let mut out = String::new();
    for d in docs {
        if let Some(sep) = &d.separator {
            out.push_str(sep);
        }
        out.push_str(&d.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for text in [
            "",
            "a: 1\n",
            "---\na: 1\n",
            "# c\na: 1\n---\nb: 2\n--- # x\nc: 3",
            "a: |\n  ---not a separator\n  x\n---\n",
            "a: 1\r\n---\r\nb: 2\r\n",
        ] {
            let docs = split(text);
            assert_eq!(join(&docs), text, "{text:?} -> {docs:?}");
        }
        let docs = split("# only a comment\n---\na: 1\n");
        assert_eq!(docs.len(), 2);
        assert!(docs[0].is_blank());
        assert!(!docs[1].is_blank());
    }
}
