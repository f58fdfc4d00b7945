//! Where a field of a scenario file is: its line, from the field's path (`provider.rpm`,
//! `agents[1].count`), and a field's path from a position in the file.
//!
//! Reads the file line by line as scenario files are written: `[table]` and `[[array]]` headers,
//! then `key = value` lines. A field given any other way (an inline table) is found by its table
//! alone, or not at all.

/// A table's name, and its index among the `[[name]]`s of an array of tables.
type Table = (String, Option<usize>);

/// A field's place: its table, and its key.
#[derive(Debug, PartialEq, Eq)]
struct Place {
    table: Option<Table>,
    key: String,
}

/// One line of a file that says something: its number (from 1), the table it is in, and the key
/// it sets (none on a header line).
struct Line {
    number: usize,
    table: Option<Table>,
    key: Option<String>,
}

impl Place {
    /// `agents[1].count` → table `agents`, index 1, key `count`; `seed` → no table.
    fn parse(path: &str) -> Option<Place> {
        let (table, key) = match path.split_once('.') {
            Some((t, k)) => (Some(t), k),
            None => (None, path),
        };
        let table = table.map(|t| match t.split_once('[') {
            Some((name, rest)) => (
                name.to_owned(),
                rest.trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (t.to_owned(), None),
        });
        let key = key.split('[').next()?.to_owned();
        (!key.is_empty()).then_some(Place { table, key })
    }

    fn path(&self) -> String {
        match &self.table {
            None => self.key.clone(),
            Some((t, None)) => format!("{t}.{}", self.key),
            Some((t, Some(i))) => format!("{t}[{i}].{}", self.key),
        }
    }
}

/// The headers and `key = value` lines of `text`.
fn lines(text: &str) -> Vec<Line> {
    let mut table: Option<Table> = None;
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let n = match seen.iter_mut().find(|(s, _)| *s == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((name.clone(), 0));
                    0
                }
            };
            table = Some((name, Some(n)));
            out.push(Line {
                number: i + 1,
                table: table.clone(),
                key: None,
            });
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = Some((name.trim().to_owned(), None));
            out.push(Line {
                number: i + 1,
                table: table.clone(),
                key: None,
            });
        } else if let Some((key, _)) = t.split_once('=').filter(|_| !t.starts_with('#')) {
            out.push(Line {
                number: i + 1,
                table: table.clone(),
                key: Some(key.trim().trim_matches('"').to_owned()),
            });
        }
    }
    out
}

/// The line of the field at `path`, if the file gives it.
pub(super) fn line_of(text: &str, path: &str) -> Option<usize> {
    let place = Place::parse(path)?;
    lines(text).into_iter().find_map(|l| {
        let table_matches = match (&place.table, &l.table) {
            (None, None) => true,
            (Some((a, ai)), Some((b, bi))) => a == b && (ai.is_none() || ai == bi),
            _ => false,
        };
        (table_matches && l.key.as_deref() == Some(place.key.as_str())).then_some(l.number)
    })
}

/// The line of byte `offset` of `text`, and the path of the field on that line (or of its table,
/// for a header line).
pub(super) fn field_at(text: &str, offset: usize) -> (usize, Option<String>) {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    let field = lines(text)
        .into_iter()
        .find(|l| l.number == line)
        .and_then(|l| match (l.table, l.key) {
            (table, Some(key)) => Some(Place { table, key }.path()),
            (Some((t, Some(i))), None) => Some(format!("{t}[{i}]")),
            (Some((t, None)), None) => Some(t),
            (None, None) => None,
        });
    (line, field)
}

/// The field path a validation message starts with (`provider.rpm must be …`), if it does.
pub(super) fn leading_path(message: &str) -> Option<&str> {
    let word = message.split_whitespace().next()?;
    let ok = word
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
    (ok && word.chars().next()?.is_ascii_lowercase()).then_some(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "name = \"x\"\nseed = 3\n\n[provider]\nrpm = 100\n# note = 1\n\n[[agents]]\ncount = 2\n\n[[agents]]\ncount = 0\n";

    #[test]
    fn fields_are_found_by_their_path() {
        assert_eq!(line_of(FILE, "seed"), Some(2));
        assert_eq!(line_of(FILE, "provider.rpm"), Some(5));
        assert_eq!(line_of(FILE, "agents[0].count"), Some(9));
        assert_eq!(line_of(FILE, "agents[1].count"), Some(12));
        assert_eq!(line_of(FILE, "provider.note"), None);
        assert_eq!(line_of(FILE, "provider.hidden_share"), None);
    }

    #[test]
    fn a_position_names_its_field() {
        let at = FILE.find("count = 0").unwrap();
        assert_eq!(field_at(FILE, at), (12, Some("agents[1].count".into())));
        let at = FILE.find("[provider]").unwrap();
        assert_eq!(field_at(FILE, at), (4, Some("provider".into())));
    }

    #[test]
    fn a_message_names_its_field_first() {
        assert_eq!(
            leading_path("agents[1].count must be at least 1, got 0"),
            Some("agents[1].count")
        );
        assert_eq!(leading_path("Nothing"), None);
    }
}
