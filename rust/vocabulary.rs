//! Word counting and the vocabulary: ids `0..V` by descending count, ties broken by the word.
//!
//! Counting keeps one entry per distinct word (never every token string), can be fed batch by
//! batch and merged, which is what streaming needs; `build` then fixes the ids.

use crate::error::{CssError, Result};
use crate::tokenizer::for_each_token;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub type WordCounts = FxHashMap<String, u64>;

/// Words up to this many bytes are counted under an inline `u128` key.
const INLINE_WORD_BYTES: usize = 15;

/// A word counter tuned for the hot loop. Short words (nearly all of them) are packed into a
/// `u128` (bytes plus length), so a lookup hashes two machine words and compares inline keys:
/// no pointer to chase and no memcmp. Longer words use an ordinary string map. Exact.
#[derive(Debug, Clone, Default)]
pub struct WordCounter {
    short: FxHashMap<u128, u64>,
    long: WordCounts,
}

pub(crate) fn pack(word: &str) -> Option<u128> {
    let b = word.as_bytes();
    (b.len() <= INLINE_WORD_BYTES).then(|| {
        let mut key = [0u8; 16];
        key[..b.len()].copy_from_slice(b);
        key[15] = b.len() as u8;
        u128::from_le_bytes(key)
    })
}

fn unpack(key: u128) -> String {
    let bytes = key.to_le_bytes();
    let len = bytes[15] as usize;
    // The bytes are a prefix of a &str that ended at a char boundary: valid UTF-8.
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

impl WordCounter {
    fn with_capacity(n: usize) -> Self {
        WordCounter {
            short: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            long: WordCounts::default(),
        }
    }

    #[inline]
    fn add(&mut self, word: &str) {
        match pack(word) {
            Some(key) => *self.short.entry(key).or_insert(0) += 1,
            None => {
                if let Some(c) = self.long.get_mut(word) {
                    *c += 1;
                } else {
                    self.long.insert(word.to_string(), 1);
                }
            }
        }
    }

    fn add_text(&mut self, text: &str) -> u64 {
        let mut tokens = 0u64;
        for_each_token(text, |tok| {
            tokens += 1;
            self.add(tok);
        });
        tokens
    }

    fn add_count(&mut self, word: &str, count: u64) {
        match pack(word) {
            Some(key) => *self.short.entry(key).or_insert(0) += count,
            None => *self.long.entry(word.to_string()).or_insert(0) += count,
        }
    }

    fn merge(&mut self, other: WordCounter) {
        for (k, c) in other.short {
            *self.short.entry(k).or_insert(0) += c;
        }
        merge_into(&mut self.long, other.long);
    }

    fn merge_ref(&mut self, other: &WordCounter) {
        for (&k, &c) in &other.short {
            *self.short.entry(k).or_insert(0) += c;
        }
        for (w, &c) in &other.long {
            *self.long.entry(w.clone()).or_insert(0) += c;
        }
    }

    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Words with at least `min_count` occurrences (only those are turned into strings).
    fn frequent(&self, min_count: u64) -> Vec<(String, u64)> {
        let short = self.short.iter().filter(|(_, &c)| c >= min_count);
        let long = self.long.iter().filter(|(_, &c)| c >= min_count);
        short
            .map(|(&k, &c)| (unpack(k), c))
            .chain(long.map(|(w, &c)| (w.clone(), c)))
            .collect()
    }

    fn to_counts(&self) -> WordCounts {
        let mut out = self.long.clone();
        out.extend(self.short.iter().map(|(&k, &c)| (unpack(k), c)));
        out
    }
}

fn merge_into(into: &mut WordCounts, from: WordCounts) {
    for (w, c) in from {
        *into.entry(w).or_insert(0) += c;
    }
}

/// Counts words of many texts in parallel; returns the counts and the number of tokens.
///
/// Texts are cut into one contiguous chunk of similar byte size per thread, each counted into
/// its own map; the maps are then merged. Letting rayon
/// split freely would create one map per stolen job and spend more time merging than counting.
pub fn count_texts<S: AsRef<str> + Sync>(texts: &[S]) -> (WordCounter, u64) {
    let chunks = byte_balanced_chunks(texts, rayon::current_num_threads());
    let mut parts: Vec<(WordCounter, u64)> = chunks
        .into_par_iter()
        .map(|range| {
            // Distinct words grow roughly with text size; sizing the map up front (about one
            // slot per 128 bytes) saves most of the rehashing as it grows.
            let bytes: usize = texts[range.clone()].iter().map(|t| t.as_ref().len()).sum();
            let mut counter = WordCounter::with_capacity(bytes / 128);
            let tokens = texts[range]
                .iter()
                .map(|t| counter.add_text(t.as_ref()))
                .sum();
            (counter, tokens)
        })
        .collect();
    // Merge into the largest map: fewest insertions.
    parts.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    let mut iter = parts.into_iter();
    let (mut total, mut tokens) = iter.next().unwrap_or_default();
    for (counter, n) in iter {
        total.merge(counter);
        tokens += n;
    }
    (total, tokens)
}

/// Index ranges that split `texts` into at most `n` runs of roughly equal total length.
pub(crate) fn byte_balanced_chunks<S: AsRef<str>>(
    texts: &[S],
    n: usize,
) -> Vec<std::ops::Range<usize>> {
    let total: usize = texts.iter().map(|t| t.as_ref().len() + 1).sum();
    let target = total.div_ceil(n.max(1)).max(1);
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, t) in texts.iter().enumerate() {
        acc += t.as_ref().len() + 1;
        if acc >= target {
            out.push(start..i + 1);
            start = i + 1;
            acc = 0;
        }
    }
    if start < texts.len() {
        out.push(start..texts.len());
    }
    out
}

/// Words with their counts, ids fixed, plus the raw counts that produced them (so that counting
/// can go on after a checkpoint and a rebuild gives the same ids).
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    raw: WordCounter,
    total_tokens: u64,
    min_count: u64,
    max_size: usize,
    words: Vec<String>,
    counts: Vec<u64>,
    index: FxHashMap<String, u32>,
    built: bool,
}

/// The JSON form of a vocabulary (raw counts as a plain word -> count object).
#[derive(Serialize, Deserialize)]
struct VocabularyJson {
    raw: WordCounts,
    total_tokens: u64,
    min_count: u64,
    max_size: usize,
    words: Vec<String>,
    counts: Vec<u64>,
    built: bool,
}

impl Vocabulary {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the words of `texts` (parallel). Invalidates a previous build.
    pub fn update<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> u64 {
        let (counts, tokens) = count_texts(texts);
        if self.raw.is_empty() {
            self.raw = counts;
        } else {
            self.raw.merge(counts);
        }
        self.total_tokens += tokens;
        self.built = false;
        tokens
    }

    /// Adds counts directly (e.g. from a saved counter).
    pub fn add_counts<I: IntoIterator<Item = (String, u64)>>(&mut self, counts: I) {
        for (w, c) in counts {
            self.total_tokens += c;
            self.raw.add_count(&w, c);
        }
        self.built = false;
    }

    pub fn merge(&mut self, other: &Vocabulary) {
        self.raw.merge_ref(&other.raw);
        self.total_tokens += other.total_tokens;
        self.built = false;
    }

    /// Fixes ids: words with `count >= min_count`, the `max_size` most frequent, ids by
    /// descending count with ties broken by the word (deterministic whatever the hash order).
    pub fn build(&mut self, min_count: u64, max_size: usize) -> Result<()> {
        if min_count < 1 {
            return Err(CssError::invalid("min_count", min_count, "must be >= 1"));
        }
        if max_size < 1 {
            return Err(CssError::invalid("max_size", max_size, "must be >= 1"));
        }
        let kept = self.raw.frequent(min_count);
        self.set_words(kept, min_count, max_size);
        Ok(())
    }

    /// The ids of `build`: by descending count, ties broken by the word, `max_size` at most.
    fn set_words(&mut self, mut kept: Vec<(String, u64)>, min_count: u64, max_size: usize) {
        kept.par_sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        kept.truncate(max_size);
        self.counts = kept.iter().map(|(_, c)| *c).collect();
        self.words = kept.into_iter().map(|(w, _)| w).collect();
        self.min_count = min_count;
        self.max_size = max_size;
        self.built = true;
        self.rebuild_index();
    }

    /// The vocabulary `build(min_count, max_size)` gives, from the words counted at least
    /// `min_count` times (`kept`) out of `total_tokens` tokens: counted elsewhere
    /// (`WordTable`), so the rare words need not be copied here. Only the kept words are
    /// raw counts: building again with a lower `min_count` cannot bring back the others.
    pub fn from_frequent(
        kept: Vec<(String, u64)>,
        total_tokens: u64,
        min_count: u64,
        max_size: usize,
    ) -> Result<Self> {
        if min_count < 1 {
            return Err(CssError::invalid("min_count", min_count, "must be >= 1"));
        }
        if max_size < 1 {
            return Err(CssError::invalid("max_size", max_size, "must be >= 1"));
        }
        let mut v = Vocabulary::new();
        for (w, c) in &kept {
            v.raw.add_count(w, *c);
        }
        v.total_tokens = total_tokens;
        v.set_words(kept, min_count, max_size);
        Ok(v)
    }

    fn rebuild_index(&mut self) {
        self.index = self
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
    }

    /// A built vocabulary straight from ordered words and counts (loading a saved model).
    pub fn from_words(words: Vec<String>, counts: Vec<u64>) -> Result<Self> {
        if words.len() != counts.len() {
            return Err(CssError::InvalidData(format!(
                "vocabulary has {} words but {} counts",
                words.len(),
                counts.len()
            )));
        }
        let mut raw = WordCounter::default();
        for (w, &c) in words.iter().zip(&counts) {
            raw.add_count(w, c);
        }
        let mut v = Vocabulary {
            raw,
            total_tokens: counts.iter().sum(),
            min_count: 1,
            max_size: words.len().max(1),
            words,
            counts,
            index: FxHashMap::default(),
            built: true,
        };
        v.rebuild_index();
        if v.index.len() != v.words.len() {
            return Err(CssError::InvalidData(
                "vocabulary lists the same word twice".to_string(),
            ));
        }
        Ok(v)
    }

    pub fn is_built(&self) -> bool {
        self.built
    }

    fn ensure_built(&self) -> Result<()> {
        if self.built {
            Ok(())
        } else {
            Err(CssError::NotReady(
                "vocabulary is not built yet: call build(min_count, max_size) after update()"
                    .to_string(),
            ))
        }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    pub fn distinct_words(&self) -> usize {
        self.raw.len()
    }

    /// Every word counted so far (in or out of the vocabulary) with its count.
    pub fn raw_counts(&self) -> WordCounts {
        self.raw.to_counts()
    }

    pub fn min_count(&self) -> u64 {
        self.min_count
    }

    pub fn max_size(&self) -> usize {
        self.max_size
    }

    pub fn words(&self) -> &[String] {
        &self.words
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn word_to_id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    pub fn id_to_word(&self, id: u32) -> Option<&str> {
        self.words.get(id as usize).map(String::as_str)
    }

    /// In-vocabulary token ids of `text`; out-of-vocabulary tokens are dropped.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        self.ensure_built()?;
        for_each_token(text, |tok| {
            if let Some(&id) = self.index.get(tok) {
                out.push(id);
            }
        });
        Ok(())
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.encode_into(text, &mut out)?;
        Ok(out)
    }

    /// Encodes many texts in parallel into one id array plus `len + 1` offsets.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<(Vec<u32>, Vec<i64>)> {
        self.ensure_built()?;
        let parts: Vec<Vec<u32>> = texts
            .par_iter()
            .map(|t| {
                let mut v = Vec::new();
                // ensure_built() passed, so encode_into cannot fail here.
                let _ = self.encode_into(t.as_ref(), &mut v);
                v
            })
            .collect();
        let total: usize = parts.iter().map(Vec::len).sum();
        let mut ids = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(parts.len() + 1);
        offsets.push(0i64);
        for p in parts {
            ids.extend_from_slice(&p);
            offsets.push(ids.len() as i64);
        }
        Ok((ids, offsets))
    }

    pub fn to_json(&self) -> Result<String> {
        let json = VocabularyJson {
            raw: self.raw.to_counts(),
            total_tokens: self.total_tokens,
            min_count: self.min_count,
            max_size: self.max_size,
            words: self.words.clone(),
            counts: self.counts.clone(),
            built: self.built,
        };
        serde_json::to_string(&json).map_err(|e| CssError::InvalidData(e.to_string()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let j: VocabularyJson = serde_json::from_str(text)
            .map_err(|e| CssError::InvalidData(format!("invalid vocabulary JSON: {e}")))?;
        if j.words.len() != j.counts.len() {
            return Err(CssError::InvalidData(
                "invalid vocabulary JSON: words and counts differ in length".to_string(),
            ));
        }
        let mut raw = WordCounter::default();
        for (w, c) in &j.raw {
            raw.add_count(w, *c);
        }
        let mut v = Vocabulary {
            raw,
            total_tokens: j.total_tokens,
            min_count: j.min_count,
            max_size: j.max_size,
            words: j.words,
            counts: j.counts,
            index: FxHashMap::default(),
            built: j.built,
        };
        v.rebuild_index();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_by_count_then_word() {
        let mut v = Vocabulary::new();
        v.update(&["b a c a b a d", "c"]);
        v.build(2, 10).unwrap();
        assert_eq!(v.words(), &["a", "b", "c"]);
        assert_eq!(v.counts(), &[3, 2, 2]);
        assert_eq!(v.encode("a d c zz").unwrap(), vec![0, 2]);
    }

    #[test]
    fn max_size_and_min_count_validated() {
        let mut v = Vocabulary::new();
        v.update(&["x y z"]);
        assert!(matches!(v.build(0, 5), Err(CssError::InvalidValue { .. })));
        assert!(matches!(v.build(1, 0), Err(CssError::InvalidValue { .. })));
        v.build(1, 2).unwrap();
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn unbuilt_encode_is_an_error() {
        let mut v = Vocabulary::new();
        v.update(&["x"]);
        assert!(matches!(v.encode("x"), Err(CssError::NotReady(_))));
    }

    #[test]
    fn update_in_batches_equals_one_pass() {
        let texts = ["the cat sat", "on the mat", "the end"];
        let mut one = Vocabulary::new();
        one.update(&texts);
        let mut a = Vocabulary::new();
        a.update(&texts[..1]);
        let mut b = Vocabulary::new();
        b.update(&texts[1..]);
        a.merge(&b);
        one.build(1, 100).unwrap();
        a.build(1, 100).unwrap();
        assert_eq!(one.words(), a.words());
        assert_eq!(one.counts(), a.counts());
        assert_eq!(one.total_tokens(), 8);
    }

    #[test]
    fn json_round_trip() {
        let mut v = Vocabulary::new();
        v.update(&["a a b c c c"]);
        v.build(1, 10).unwrap();
        let back = Vocabulary::from_json(&v.to_json().unwrap()).unwrap();
        assert_eq!(back.words(), v.words());
        assert_eq!(back.word_to_id("c"), Some(0));
    }

    proptest! {
        #[test]
        fn encode_batch_matches_encode(texts in proptest::collection::vec("[a-e ]{0,30}", 0..20)) {
            let mut v = Vocabulary::new();
            v.update(&texts);
            v.build(1, 1000).unwrap();
            let (ids, offsets) = v.encode_batch(&texts).unwrap();
            prop_assert_eq!(offsets.len(), texts.len() + 1);
            for (i, t) in texts.iter().enumerate() {
                let part = &ids[offsets[i] as usize..offsets[i + 1] as usize];
                prop_assert_eq!(part.to_vec(), v.encode(t).unwrap());
            }
        }
    }
}
