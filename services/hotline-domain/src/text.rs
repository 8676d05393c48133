//! Text normalisation shared by every matcher, so that a phrase found in one place is found in all.

/// Full-width ASCII to half-width, ideographic space to space, ASCII lower-cased. Chinese text is
/// otherwise kept as written.
pub fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => {
                char::from_u32(c as u32 - 0xFEE0).map_or(c, |h| h.to_ascii_lowercase())
            }
            _ => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Find every non-overlapping occurrence of the longest matching needle, scanning left to right.
/// Needles must already be normalised. Returns (byte offset, needle index).
pub fn find_longest_matches(haystack: &str, needles: &[String]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < haystack.len() {
        let rest = &haystack[pos..];
        let best = needles
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty() && rest.starts_with(n.as_str()))
            .max_by_key(|(_, n)| n.len());
        match best {
            Some((index, needle)) => {
                found.push((pos, index));
                pos += needle.len();
            }
            None => pos += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_width_and_case() {
        let check = |input: &str, expected: &str| assert_eq!(normalise(input), expected, "{input}");
        check("ＡＢＣ１２３", "abc123");
        check("食堂　饭菜", "食堂 饭菜");
        check("Hello，世界！", "hello,世界!");
        check("", "");
    }

    #[test]
    fn longest_match_wins() {
        let needles = vec!["市南".to_owned(), "市南区".to_owned(), "李沧区".to_owned()];
        let found = find_longest_matches("我在市南区和李沧区", &needles);
        assert_eq!(found.iter().map(|f| f.1).collect::<Vec<_>>(), vec![1, 2]);
    }
}
