//! Splits license text into records and records into words.
//!
//! A **record** is one logical line: a physical line plus the lines it
//! continues onto with a trailing `\`. Blank lines and lines whose first
//! non-blank character is `#` are skipped between records (a line reached
//! through a `\` continuation is always part of the record, even if it starts
//! with `#`). Lines end in `\n` or `\r\n`.
//!
//! A **word** is a run of non-blank characters; a `"` opens a quoted section
//! in which blanks (and continuation joins) are part of the word. Quotes can
//! start anywhere in a word (`NOTICE="Acme, Inc."`, `"ETHER=a b"`) and are
//! removed from its text. The first `=` outside quotes splits a word into key
//! and value (`HOSTID=ID=123` is key `HOSTID`, value `ID=123`). A quoted
//! section must close before the record ends; one that does not is an error
//! for the whole record (the next physical line is not swallowed).
//!
//! A continuation join (blanks, `\`, end of line, the next line's leading
//! blanks) reads as one space, inside or outside quotes.
//!
//! A `\` on the last line of the file continues the record past the end
//! of the file: the record ends there and carries [`Record::dangling`] (the
//! parsers reject it, since something was probably cut off). A physical line
//! reached through a continuation whose first word is a record keyword
//! usually means a stray `\` joined two records; [`starts_of_lines`] gives
//! the parsers those words so they can say so.
//!
//! **Positions**: every word keeps the physical line and column of its first
//! character (and of its value, after the `=`). Columns count characters from
//! 1; a tab is one column. So a bad token on the third physical line of a
//! record is reported at that line and its column on that line.

/// A place in the file: 1-based physical line and character column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    /// 1-based physical line.
    pub(crate) line: u32,
    /// 1-based column, in characters.
    pub(crate) column: u32,
}

/// One word of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word with quotes removed.
    pub(crate) text: String,
    /// The word as written (quotes kept), continuation joins read as a space.
    pub(crate) raw: String,
    /// Byte index in `text` of the first `=` outside quotes.
    eq: Option<usize>,
    /// Where the word starts.
    pub(crate) pos: Pos,
    /// Where the value starts (after the `=`); `pos` when there is no `=`.
    pub(crate) value_pos: Pos,
}

impl Word {
    /// The key of a `key=value` word; `None` for a bare word.
    pub(crate) fn key(&self) -> Option<&str> {
        self.eq.and_then(|i| self.text.get(..i))
    }

    /// The value of a `key=value` word, or the whole text of a bare word.
    pub(crate) fn value(&self) -> &str {
        match self.eq {
            Some(i) => self.text.get(i + 1..).unwrap_or(""),
            None => &self.text,
        }
    }

    /// True for a bare word (no `=` outside quotes).
    pub(crate) fn is_bare(&self) -> bool {
        self.eq.is_none()
    }
}

/// A logical line, split into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// 1-based line the record starts on.
    pub(crate) line: u32,
    /// The words, at least one. Or the position of a quote never closed.
    pub(crate) words: Result<Vec<Word>, UnterminatedQuote>,
    /// Where the `\` is that continues this record past the end of the file.
    pub(crate) dangling: Option<Pos>,
    /// 1-based last physical line of the record (`line` unless continued).
    pub(crate) end_line: u32,
}

/// A `"` that is not closed before the record ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnterminatedQuote {
    /// Where the opening quote is.
    pub(crate) pos: Pos,
}

/// Splits `text` into records (skipping blank and comment lines).
pub(crate) fn records(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut chars: Vec<(char, Pos)> = Vec::new();
    let mut start_line = 0;
    let mut end_line = 0;
    let mut continuing: Option<Pos> = None;
    let mut physical_lines: Vec<&str> = text.split('\n').collect();
    // The empty piece after the file's final line break is not a line.
    if physical_lines.last().is_some_and(|l| l.is_empty()) {
        physical_lines.pop();
    }
    for (index, physical) in physical_lines.into_iter().enumerate() {
        let line = to_u32(index + 1);
        let physical = physical.strip_suffix('\r').unwrap_or(physical);
        if continuing.is_none() {
            let trimmed = physical.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = line;
        }
        continuing = push_line(&mut chars, physical, line, continuing.is_some());
        end_line = line;
        if continuing.is_none() {
            out.push(finish(start_line, end_line, &mut chars, None));
        }
    }
    if continuing.is_some() {
        out.push(finish(start_line, end_line, &mut chars, continuing));
    }
    out
}

/// The words of a record that begin a physical line reached through a
/// continuation (every word after the first that is the first on its line).
pub(crate) fn starts_of_lines(words: &[Word]) -> impl Iterator<Item = &Word> {
    words
        .windows(2)
        .filter(|pair| pair[1].pos.line != pair[0].pos.line)
        .map(|pair| &pair[1])
}

/// Appends one physical line's characters; returns the position of the `\`
/// if it ends with one (the backslash, the blanks around it and the leading
/// blanks of the line it continues onto become a single space).
fn push_line(
    chars: &mut Vec<(char, Pos)>,
    physical: &str,
    line: u32,
    continued: bool,
) -> Option<Pos> {
    let content = physical.trim_end();
    let (content, backslash) = match content.strip_suffix('\\') {
        Some(rest) => (
            rest.trim_end(),
            Some(Pos {
                line,
                column: to_u32(content.chars().count()),
            }),
        ),
        None => (content, None),
    };
    let mut column = 0;
    let mut leading = continued;
    for (i, c) in content.chars().enumerate() {
        column = to_u32(i + 1);
        leading = leading && c.is_whitespace();
        if !leading {
            chars.push((c, Pos { line, column }));
        }
    }
    if backslash.is_some() {
        chars.push((
            ' ',
            Pos {
                line,
                column: column + 1,
            },
        ));
    }
    backslash
}

fn finish(line: u32, end_line: u32, chars: &mut Vec<(char, Pos)>, dangling: Option<Pos>) -> Record {
    let words = split_words(chars);
    chars.clear();
    Record {
        line,
        words,
        dangling,
        end_line,
    }
}

/// Splits a record's characters into words.
fn split_words(chars: &[(char, Pos)]) -> Result<Vec<Word>, UnterminatedQuote> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (c, pos) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let mut word = Word {
            text: String::new(),
            raw: String::new(),
            eq: None,
            pos,
            value_pos: pos,
        };
        let mut open_quote: Option<Pos> = None;
        while let Some(&(c, p)) = chars.get(i) {
            if c.is_whitespace() && open_quote.is_none() {
                break;
            }
            i += 1;
            word.raw.push(c);
            if c == '"' {
                open_quote = if open_quote.is_some() { None } else { Some(p) };
                continue;
            }
            if c == '=' && open_quote.is_none() && word.eq.is_none() {
                word.eq = Some(word.text.len());
                word.value_pos = chars.get(i).map_or(
                    Pos {
                        line: p.line,
                        column: p.column + 1,
                    },
                    |&(_, next)| next,
                );
            }
            word.text.push(c);
        }
        if let Some(pos) = open_quote {
            return Err(UnterminatedQuote { pos });
        }
        words.push(word);
    }
    Ok(words)
}

/// Line and column counts saturate rather than wrap on absurd inputs.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Word> {
        let recs = records(text);
        assert_eq!(recs.len(), 1, "{recs:?}");
        recs.into_iter().next().unwrap().words.unwrap()
    }

    fn texts(text: &str) -> Vec<String> {
        words(text).into_iter().map(|w| w.text).collect()
    }

    fn at(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn blanks_tabs_and_comments() {
        let recs = records("# comment\n\n   \n\tFEATURE  a\tb  \n  # indented comment\nVENDOR x");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].line, 4);
        assert_eq!(recs[1].line, 6);
        let w = recs[0].words.as_ref().unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].text, "FEATURE");
        assert_eq!(w[0].pos, at(4, 2));
        assert_eq!(w[1].pos, at(4, 11));
        assert_eq!(w[2].pos, at(4, 13));
    }

    #[test]
    fn key_value_and_quotes() {
        let w =
            words(r#"X NOTICE="Licensed to Acme, Inc." HOSTID=ID=123 SUPERSEDE "ETHER=a b" k="""#);
        assert_eq!(w.len(), 6);
        assert_eq!(w[1].key(), Some("NOTICE"));
        assert_eq!(w[1].value(), "Licensed to Acme, Inc.");
        assert_eq!(w[1].raw, r#"NOTICE="Licensed to Acme, Inc.""#);
        assert_eq!(w[1].value_pos, at(1, 10));
        assert_eq!(w[2].key(), Some("HOSTID"));
        assert_eq!(w[2].value(), "ID=123");
        assert!(w[3].is_bare());
        assert_eq!(w[3].value(), "SUPERSEDE");
        // `=` inside quotes does not split.
        assert!(w[4].is_bare());
        assert_eq!(w[4].text, "ETHER=a b");
        assert_eq!(w[5].key(), Some("k"));
        assert_eq!(w[5].value(), "");
    }

    #[test]
    fn continuation_lines_join_with_one_space_and_keep_positions() {
        let text = "INCREMENT a b \\\n    1.0 permanent\t\\\n  5 SIGN=\"0000 1111 \\\n      2222 3333\"\nUSE_SERVER";
        let recs = records(text);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].line, 1);
        assert_eq!(recs[1].line, 5);
        let w = recs[0].words.as_ref().unwrap();
        let t: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(
            t,
            [
                "INCREMENT",
                "a",
                "b",
                "1.0",
                "permanent",
                "5",
                "SIGN=0000 1111 2222 3333"
            ]
        );
        assert_eq!(w[3].pos, at(2, 5));
        assert_eq!(w[5].pos, at(3, 3));
        assert_eq!(w[6].value_pos, at(3, 10));
    }

    #[test]
    fn crlf_line_endings() {
        let recs = records("SERVER h ANY 27000\r\nVENDOR CITRIX \\\r\n  PORT=7279\r\n");
        assert_eq!(recs.len(), 2);
        let w = recs[1].words.as_ref().unwrap();
        assert_eq!(w[2].text, "PORT=7279");
        assert_eq!(w[2].pos, at(3, 3));
        assert!(!w.iter().any(|w| w.text.contains('\r')));
    }

    #[test]
    fn backslash_inside_a_line_is_literal() {
        assert_eq!(
            texts(r"VENDOR x C:\flexlm\x.exe"),
            ["VENDOR", "x", r"C:\flexlm\x.exe"]
        );
    }

    #[test]
    fn unterminated_quote_ends_at_the_record() {
        let recs = records("FEATURE a NOTICE=\"oops\nUSE_SERVER\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].words, Err(UnterminatedQuote { pos: at(1, 18) }));
        assert!(recs[1].words.is_ok());
    }

    #[test]
    fn continuation_at_end_of_file() {
        for text in ["FEATURE a \\", "FEATURE a \\\n", "FEATURE a \\\r\n"] {
            let recs = records(text);
            assert_eq!(recs.len(), 1, "{text:?}");
            assert_eq!(recs[0].words.as_ref().unwrap().len(), 2);
            assert_eq!(recs[0].dangling, Some(at(1, 11)), "{text:?}");
        }
        // A blank line after the `\` ends the record as usual.
        let recs = records("FEATURE a \\\n\nVENDOR v\n");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].dangling, None);
    }

    #[test]
    fn words_starting_continued_lines() {
        let recs = records("INCREMENT a b \\\n  1 2 \\\nINCREMENT c\n");
        let w = recs[0].words.as_ref().unwrap();
        let starts: Vec<&str> = starts_of_lines(w).map(|w| w.text.as_str()).collect();
        assert_eq!(starts, ["1", "INCREMENT"]);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let w = words("X NOTICE=\"Société\" Y");
        assert_eq!(w[2].pos, at(1, 20));
    }
}
