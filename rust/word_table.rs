//! Words numbered in the order they are first seen, and the token-id stream they encode.
//!
//! Streaming tokenizes every document once into *first-seen ids*: the first new word of the
//! corpus is 0, the next new one 1, and so on. The ids are what the checkpoint cache stores
//! (4 bytes a token, plus one `END_OF_DOCUMENT` marker per document), and the table only ever
//! grows at its end, so a checkpoint appends the words first seen since the previous one and
//! nothing else. Counts are kept per id; after a resume they are recomputed from the cached
//! stream (`recount`). Once streaming is done, `vocabulary` orders the words exactly as
//! `Vocabulary::build` does and returns the table that remaps first-seen ids to final ids
//! (`remap_documents`), so the corpus is the one tokenizing the text again would give.

use crate::error::{CssError, Result};
use crate::tokenizer::for_each_token;
use crate::vocabulary::{byte_balanced_chunks, Vocabulary};
use hashbrown::hash_table::{Entry, HashTable};
use rayon::prelude::*;
use rustc_hash::FxHasher;
use std::hash::Hasher;

/// Ends every document in the id stream (never a word id).
pub const END_OF_DOCUMENT: u32 = u32::MAX;
/// Marks a first-seen id whose word is not in the final vocabulary (`vocabulary`'s remap).
pub const DROPPED: u32 = u32::MAX;
/// Below this many bytes a batch is encoded on the calling thread: splitting it costs more.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Words numbered 0, 1, 2, ... in the order they were added, stored end to end in one buffer
/// (each followed by `\n`), with a hash table of ids. A slot is 8 bytes (id and hash), so 2 M
/// words take ~36 MB of table besides their text, where a map keyed by strings (or by words
/// packed into a `u128`) took several times that; growing the table rehashes from the stored
/// hashes without touching the text.
#[derive(Debug, Clone)]
struct Interner {
    slots: HashTable<Slot>,
    /// Every word followed by `\n`, in id order: exactly the bytes a checkpoint appends.
    text: Vec<u8>,
    /// Where word `i` starts in `text` (`starts[len]` is `text.len()`).
    starts: Vec<usize>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    hash: u32,
}

/// The hash of a word: 32 bits kept in its slot, spread to 64 for the table (which takes its
/// tags from the top bits and its buckets from the low ones).
#[inline]
fn word_hash(word: &[u8]) -> u32 {
    let mut h = FxHasher::default();
    h.write(word);
    h.finish() as u32
}

#[inline]
fn spread(hash: u32) -> u64 {
    let h = u64::from(hash);
    (h << 32 | h).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            slots: HashTable::new(),
            text: Vec::new(),
            starts: vec![0],
        }
    }
}

impl Interner {
    fn len(&self) -> usize {
        self.starts.len() - 1
    }

    #[inline]
    fn bytes(&self, id: u32) -> &[u8] {
        let id = id as usize;
        &self.text[self.starts[id]..self.starts[id + 1] - 1]
    }

    fn word(&self, id: u32) -> &str {
        // Built from &str tokens joined by '\n': every word is valid UTF-8.
        std::str::from_utf8(self.bytes(id)).unwrap_or_default()
    }

    #[inline]
    fn get(&self, word: &str) -> Option<u32> {
        let word = word.as_bytes();
        let hash = word_hash(word);
        self.slots
            .find(spread(hash), |s| s.hash == hash && self.bytes(s.id) == word)
            .map(|s| s.id)
    }

    /// The id of `word`, and whether it was added just now. One probe of the table either way
    /// (a new word is where most of the time of a corpus of rare words goes).
    #[inline]
    fn intern(&mut self, word: &str) -> (u32, bool) {
        let bytes = word.as_bytes();
        let hash = word_hash(bytes);
        let (text, starts) = (&self.text, &self.starts);
        let same = |s: &Slot| {
            let id = s.id as usize;
            s.hash == hash && &text[starts[id]..starts[id + 1] - 1] == bytes
        };
        match self.slots.entry(spread(hash), same, |s| spread(s.hash)) {
            Entry::Occupied(found) => (found.get().id, false),
            Entry::Vacant(vacant) => {
                let id = (self.starts.len() - 1) as u32;
                vacant.insert(Slot { id, hash });
                self.text.extend_from_slice(bytes);
                self.text.push(b'\n');
                self.starts.push(self.text.len());
                (id, true)
            }
        }
    }
}

/// The growing word -> first-seen id table, with a count per id.
#[derive(Debug, Clone, Default)]
pub struct WordTable {
    words: Interner,
    counts: Vec<u64>,
}

impl WordTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table from the words file a checkpoint wrote (`words_text`); counts start at zero.
    pub fn from_words_text(text: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(text)
            .map_err(|e| CssError::InvalidData(format!("words are not UTF-8 ({e})")))?;
        let mut table = WordTable::new();
        if text.is_empty() {
            return Ok(table);
        }
        let body = text.strip_suffix('\n').ok_or_else(|| {
            CssError::InvalidData("the words do not end with a newline".to_string())
        })?;
        for word in body.split('\n') {
            let id = table.len();
            if word.is_empty() || !table.intern(word)?.1 {
                return Err(CssError::InvalidData(format!(
                    "word {id} ({word:?}) is empty or listed twice"
                )));
            }
        }
        Ok(table)
    }

    /// Distinct words seen.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn word(&self, id: usize) -> &str {
        self.words.word(id as u32)
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The words from id `start` on, one a line: what a checkpoint appends to its words file.
    pub fn words_text(&self, start: usize) -> &[u8] {
        &self.words.text[self.words.starts[start.min(self.len())]..]
    }

    /// The id of `word`, added if new (and whether it was).
    fn intern(&mut self, word: &str) -> Result<(u32, bool)> {
        // END_OF_DOCUMENT and the ids `encode` hands out provisionally stay above every word.
        if self.len() >= (u32::MAX / 2) as usize {
            return Err(CssError::InvalidData(format!(
                "more than {} distinct words: the id cache holds at most that many",
                self.len()
            )));
        }
        let (id, fresh) = self.words.intern(word);
        if fresh {
            self.counts.push(0);
        }
        Ok((id, fresh))
    }

    /// Tokenizes `texts` into the id stream (each document's ids, then `END_OF_DOCUMENT`),
    /// numbering new words in the order they first appear and counting every token. Returns
    /// the stream and the number of tokens. The result does not depend on the thread count.
    pub fn encode<S: AsRef<str> + Sync>(&mut self, texts: &[S]) -> Result<(Vec<u32>, u64)> {
        let bytes: usize = texts.iter().map(|t| t.as_ref().len()).sum();
        let threads = rayon::current_num_threads();
        let stream = if bytes < PARALLEL_BYTES || threads == 1 {
            self.encode_here(texts)?
        } else {
            self.encode_parallel(texts, threads)?
        };
        let mut tokens = 0u64;
        for &id in &stream {
            if id != END_OF_DOCUMENT {
                self.counts[id as usize] += 1;
                tokens += 1;
            }
        }
        Ok((stream, tokens))
    }

    fn encode_here<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<u32>> {
        let mut stream = Vec::new();
        let mut failed = None;
        for text in texts {
            for_each_token(text.as_ref(), |token| match self.intern(token) {
                Ok((id, _)) => stream.push(id),
                Err(e) => failed = Some(e),
            });
            if let Some(e) = failed {
                return Err(e);
            }
            stream.push(END_OF_DOCUMENT);
        }
        Ok(stream)
    }

    /// One contiguous run of texts per thread, looked up in the table as it stood; words new
    /// to the table get provisional ids `base + i` per run. The runs' new words are then
    /// added in run order (so ids are first-seen order, as encoding on one thread gives) and
    /// the provisional ids replaced.
    fn encode_parallel<S: AsRef<str> + Sync>(
        &mut self,
        texts: &[S],
        threads: usize,
    ) -> Result<Vec<u32>> {
        let base = self.len() as u32;
        let table = &*self;
        let mut parts: Vec<(Vec<u32>, Interner)> = byte_balanced_chunks(texts, threads)
            .into_par_iter()
            .map(|range| table.encode_run(&texts[range], base))
            .collect();
        let mut finals = Vec::with_capacity(parts.len());
        for (_, new) in &parts {
            let ids = (0..new.len() as u32)
                .map(|i| self.intern(new.word(i)).map(|(id, _)| id))
                .collect::<Result<Vec<u32>>>()?;
            finals.push(ids);
        }
        parts
            .par_iter_mut()
            .zip(finals.par_iter())
            .for_each(|((stream, _), finals)| {
                for id in stream.iter_mut() {
                    if *id != END_OF_DOCUMENT && *id >= base {
                        *id = finals[(*id - base) as usize];
                    }
                }
            });
        Ok(parts.into_iter().flat_map(|(stream, _)| stream).collect())
    }

    fn encode_run<S: AsRef<str>>(&self, texts: &[S], base: u32) -> (Vec<u32>, Interner) {
        let mut stream = Vec::new();
        let mut new = Interner::default();
        for text in texts {
            for_each_token(text.as_ref(), |token| {
                let id = match self.words.get(token) {
                    Some(id) => id,
                    None => base + new.intern(token).0,
                };
                stream.push(id);
            });
            stream.push(END_OF_DOCUMENT);
        }
        (stream, new)
    }

    /// Adds the tokens of a cached id stream to the counts (a resumed run recounts its cache).
    /// An id the table does not hold is an error: the cache and the words do not belong
    /// together.
    pub fn recount(&mut self, stream: &[u32]) -> Result<u64> {
        let len = self.len();
        let mut tokens = 0u64;
        for &id in stream {
            if id == END_OF_DOCUMENT {
                continue;
            }
            let count = self.counts.get_mut(id as usize).ok_or_else(|| {
                CssError::InvalidData(format!("token id {id} is not one of the {len} words"))
            })?;
            *count += 1;
            tokens += 1;
        }
        Ok(tokens)
    }

    /// The vocabulary `Vocabulary::build(min_count, max_size)` gives on the same counts, and
    /// the table mapping each first-seen id to its vocabulary id (`DROPPED` when left out).
    pub fn vocabulary(&self, min_count: u64, max_size: usize) -> Result<(Vocabulary, Vec<u32>)> {
        let kept: Vec<(String, u64)> = (0..self.len())
            .filter(|&i| self.counts[i] >= min_count)
            .map(|i| (self.word(i).to_string(), self.counts[i]))
            .collect();
        let total: u64 = self.counts.iter().sum();
        let vocab = Vocabulary::from_frequent(kept, total, min_count, max_size)?;
        let mut remap = vec![DROPPED; self.len()];
        for (i, slot) in remap.iter_mut().enumerate() {
            if self.counts[i] >= min_count {
                *slot = vocab.word_to_id(self.word(i)).unwrap_or(DROPPED);
            }
        }
        Ok((vocab, remap))
    }
}

/// The documents of an id stream through `remap` (a `WordTable::vocabulary` table): dropped
/// words left out, documents left empty dropped. Reads up to the last complete document and
/// returns the ids, their `documents + 1` offsets (from 0) and how many stream entries it read.
pub fn remap_documents(stream: &[u32], remap: &[u32]) -> Result<(Vec<u32>, Vec<i64>, usize)> {
    let used = stream
        .iter()
        .rposition(|&id| id == END_OF_DOCUMENT)
        .map_or(0, |i| i + 1);
    let mut ids = Vec::with_capacity(used);
    let mut offsets = vec![0i64];
    for &id in &stream[..used] {
        if id == END_OF_DOCUMENT {
            if ids.len() as i64 > *offsets.last().unwrap_or(&0) {
                offsets.push(ids.len() as i64);
            }
            continue;
        }
        let mapped = *remap.get(id as usize).ok_or_else(|| {
            CssError::InvalidData(format!(
                "token id {id} is not one of the {} words",
                remap.len()
            ))
        })?;
        if mapped != DROPPED {
            ids.push(mapped);
        }
    }
    Ok((ids, offsets, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const E: u32 = END_OF_DOCUMENT;

    #[test]
    fn ids_in_first_seen_order_with_counts() {
        let mut t = WordTable::new();
        let (stream, tokens) = t.encode(&["b a b", "", "c A"]).unwrap();
        assert_eq!(stream, vec![0, 1, 0, E, E, 2, 1, E]);
        assert_eq!(tokens, 5);
        assert_eq!(t.counts(), &[2, 2, 1]);
        assert_eq!(t.words_text(0), b"b\na\nc\n");
        assert_eq!(t.words_text(2), b"c\n");
        let (more, _) = t.encode(&["d b"]).unwrap();
        assert_eq!(more, vec![3, 0, E]);
        assert_eq!(t.words_text(3), b"d\n");
    }

    #[test]
    fn words_text_round_trips_and_recount_restores_counts() {
        let mut t = WordTable::new();
        let long = "a_word_longer_than_fifteen_bytes";
        let (stream, _) = t.encode(&[format!("x {long} y x"), "café".into()]).unwrap();
        let mut back = WordTable::from_words_text(t.words_text(0)).unwrap();
        assert_eq!(back.recount(&stream).unwrap(), 5);
        assert_eq!(back.counts(), t.counts());
        assert_eq!(back.word(1), long);
        assert_eq!(back.encode(&[long]).unwrap().0, vec![1, E]);
        assert!(back.recount(&[7]).is_err());
    }

    #[test]
    fn damaged_words_text_is_an_error() {
        for bad in [&b"a\nb"[..], b"a\n\nb\n", b"a\na\n", b"\xff\n"] {
            assert!(WordTable::from_words_text(bad).is_err(), "{bad:?}");
        }
        assert!(WordTable::from_words_text(b"").unwrap().is_empty());
    }

    #[test]
    fn remap_drops_rare_words_and_empty_documents() {
        let mut t = WordTable::new();
        let (stream, _) = t.encode(&["a b a", "b", "c", "a c a"]).unwrap();
        let (vocab, remap) = t.vocabulary(2, 10).unwrap();
        assert_eq!(vocab.words(), &["a", "b", "c"]);
        let (vocab, remap2) = t.vocabulary(3, 10).unwrap();
        assert_eq!(vocab.words(), &["a"]);
        assert_eq!(remap2, vec![0, DROPPED, DROPPED]);
        let (ids, offsets, used) = remap_documents(&stream, &remap2).unwrap();
        assert_eq!(
            (ids, offsets, used),
            (vec![0, 0, 0, 0], vec![0, 2, 4], stream.len())
        );
        // An unfinished document at the end is left for the next chunk.
        let (ids, offsets, used) = remap_documents(&stream[..7], &remap).unwrap();
        assert_eq!((ids, offsets, used), (vec![0, 1, 0, 1], vec![0, 3, 4], 6));
    }

    fn texts_strategy() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-f ]{0,40}|[a-z]{20}( [a-c]{1,2}){0,5}", 0..60)
    }

    proptest! {
        #[test]
        fn remapped_stream_equals_encoding_with_the_built_vocabulary(
            texts in texts_strategy(), min_count in 1u64..4, max_size in 1usize..30,
        ) {
            let mut t = WordTable::new();
            let mut stream = Vec::new();
            for batch in texts.chunks(7) {
                stream.extend(t.encode(batch).unwrap().0);
            }
            let (vocab, remap) = t.vocabulary(min_count, max_size).unwrap();
            let mut reference = Vocabulary::new();
            reference.update(&texts);
            reference.build(min_count, max_size).unwrap();
            prop_assert_eq!(vocab.words(), reference.words());
            prop_assert_eq!(vocab.counts(), reference.counts());
            let (ids, offsets, _) = remap_documents(&stream, &remap).unwrap();
            let (ref_ids, ref_offsets) = reference.encode_batch(&texts).unwrap();
            let mut kept = vec![0i64];
            kept.extend(ref_offsets.windows(2).filter(|w| w[1] > w[0]).map(|w| w[1]));
            prop_assert_eq!(ids, ref_ids);
            prop_assert_eq!(offsets, kept);
        }

        #[test]
        fn parallel_encoding_equals_one_thread(texts in texts_strategy()) {
            let mut one = WordTable::new();
            let expected = one.encode_here(&texts).unwrap();
            let split = texts.len() / 3;
            let mut many = WordTable::new();
            let mut got = many.encode_here(&texts[..split]).unwrap();
            got.extend(many.encode_parallel(&texts[split..], 4).unwrap());
            prop_assert_eq!(got, expected);
            prop_assert_eq!(many.words_text(0), one.words_text(0));
        }
    }
}
