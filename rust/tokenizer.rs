//! Word tokenizer: lowercase, then maximal runs of word characters.
//!
//! Word characters are Unicode letters and digits of every script plus `_`. On ASCII text this
//! is exactly the original tool's `re.findall(r"[a-z0-9_]+", text.lower())`; beyond ASCII it
//! keeps `café` whole where the original cut it into `caf`.

use rayon::prelude::*;

#[inline]
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Calls `emit` with every token of `text`, reusing one buffer so that no token allocates.
pub fn for_each_token<F: FnMut(&str)>(text: &str, mut emit: F) {
    let mut token = String::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            // Fast path: the overwhelming majority of input is ASCII.
            if b.is_ascii_alphanumeric() || b == b'_' {
                token.push(b.to_ascii_lowercase() as char);
            } else if !token.is_empty() {
                emit(&token);
                token.clear();
            }
            i += 1;
            continue;
        }
        // Non-ASCII: decode one char (text is valid UTF-8, so this cannot fail).
        let c = text[i..].chars().next().unwrap_or('\u{FFFD}');
        i += c.len_utf8();
        // Lowercase first, then classify: one char may lowercase to several.
        for lc in c.to_lowercase() {
            if is_word_char(lc) {
                token.push(lc);
            } else if !token.is_empty() {
                emit(&token);
                token.clear();
            }
        }
    }
    if !token.is_empty() {
        emit(&token);
    }
}

/// The tokens of one text.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

/// The tokens of many texts, in parallel, order preserved.
pub fn tokenize_batch<S: AsRef<str> + Sync>(texts: &[S]) -> Vec<Vec<String>> {
    texts.par_iter().map(|t| tokenize(t.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The original tool's rule, written out for ASCII input.
    fn reference_ascii(text: &str) -> Vec<String> {
        let lower = text.to_ascii_lowercase();
        lower
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn keeps_accented_words_whole() {
        assert_eq!(
            tokenize("Hello, Café-World_2!"),
            vec!["hello", "café", "world_2"]
        );
    }

    #[test]
    fn other_scripts_are_words() {
        assert_eq!(
            tokenize("Москва и 東京 123"),
            vec!["москва", "и", "東京", "123"]
        );
    }

    #[test]
    fn empty_and_punctuation_only() {
        assert!(tokenize("").is_empty());
        assert!(tokenize("  ,.;!? \n\t").is_empty());
    }

    #[test]
    fn batch_preserves_order() {
        let texts = vec!["a b", "", "C d e"];
        assert_eq!(
            tokenize_batch(&texts),
            vec![vec!["a", "b"], vec![], vec!["c", "d", "e"]]
        );
    }

    proptest! {
        #[test]
        fn ascii_matches_original_rule(s in "[ -~\t\n]{0,200}") {
            prop_assert_eq!(tokenize(&s), reference_ascii(&s));
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in any::<String>()) {
            for t in tokenize(&s) {
                prop_assert!(!t.is_empty());
            }
        }
    }
}
