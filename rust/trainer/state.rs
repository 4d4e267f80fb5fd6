//! The training state's byte format: a JSON header with every counter, cursor and setting,
//! then the spectra arrays; decoded with every size and position checked, so a damaged or
//! forged state is refused with an error instead of misleading a resumed run.

use super::corpus::Corpus;
use super::params::TrainParams;
use super::stats::{EpochStats, Tally};
use super::worker::WorkerCursor;
use crate::error::{CssError, Result};
use crate::spectra::{SharedSpectra, EMPTY};
use serde::{Deserialize, Serialize};

/// Everything a resumed run needs apart from the spectra arrays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StateHeader {
    pub(super) format: String,
    pub(super) params: TrainParams,
    pub(super) vocab_size: usize,
    pub(super) corpus_tokens: u64,
    pub(super) corpus_docs: usize,
    pub(super) corpus_fingerprint: u64,
    pub(super) epoch: usize,
    pub(super) workers: Vec<WorkerCursor>,
    pub(super) tokens_done: u64,
    pub(super) elapsed: f64,
    pub(super) epoch_tally: Tally,
    pub(super) epoch_tokens_start: u64,
    pub(super) epoch_seconds: f64,
    pub(super) epoch_stats: Vec<EpochStats>,
    pub(super) done: bool,
}

pub(super) const STATE_MAGIC: &[u8; 8] = b"CSSSTAT1";

pub(super) fn encode_state(header: &StateHeader, spectra: &SharedSpectra) -> Vec<u8> {
    let head = serde_json::to_vec(header).expect("state header serialises");
    let (freq, re, im, counters) = spectra.to_raw();
    let mut out = Vec::with_capacity(32 + head.len() + freq.len() * 10 + counters.len() * 4);
    out.extend_from_slice(STATE_MAGIC);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(&(spectra.k() as u64).to_le_bytes());
    out.extend_from_slice(&(freq.len() as u64).to_le_bytes());
    freq.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    re.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    im.iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    counters
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end =
            end.ok_or_else(|| CssError::InvalidData("training state is truncated".to_string()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn array<const N: usize, T>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        let bytes =
            self.take(n.checked_mul(N).ok_or_else(|| {
                CssError::InvalidData("training state sizes overflow".to_string())
            })?)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect())
    }
}

pub(super) fn decode_state(bytes: &[u8]) -> Result<(StateHeader, SharedSpectra)> {
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(8)? != STATE_MAGIC {
        return Err(CssError::InvalidData(
            "not a css-rs training state (bad magic bytes)".to_string(),
        ));
    }
    let head_len = r.u64()? as usize;
    let header: StateHeader = serde_json::from_slice(r.take(head_len)?)
        .map_err(|e| CssError::InvalidData(format!("training state header is corrupt: {e}")))?;
    let k = r.u64()? as usize;
    let n = r.u64()? as usize;
    if k != header.params.max_frequencies || Some(n) != header.vocab_size.checked_mul(k) {
        return Err(CssError::InvalidData(
            "training state arrays do not match its header".to_string(),
        ));
    }
    let freq = r.array(n, u16::from_le_bytes)?;
    let re = r.array(n, u32::from_le_bytes)?;
    let im = r.array(n, u32::from_le_bytes)?;
    let counters = r.array(header.vocab_size, u32::from_le_bytes)?;
    if r.pos != bytes.len() {
        return Err(CssError::InvalidData(
            "training state has trailing bytes".to_string(),
        ));
    }
    if header.workers.is_empty() {
        return Err(CssError::InvalidData(
            "training state has no workers".to_string(),
        ));
    }
    header.params.validate()?;
    check_state_frequencies(&freq, k, header.params.frequency_dim)?;
    let spectra = SharedSpectra::from_raw(k, &freq, &re, &im, &counters);
    Ok((header, spectra))
}

/// A state's positions must lie within its corpus and run: a damaged or forged state must
/// be refused with an error, never make a worker read past the corpus or a counter wrap.
pub(super) fn check_state_cursors(header: &StateHeader, corpus: &Corpus<'_>) -> Result<()> {
    let docs = corpus.num_docs();
    if let Some(w) = header
        .workers
        .iter()
        .find(|w| w.end_doc > docs || w.next_doc > w.end_doc)
    {
        return Err(CssError::InvalidData(format!(
            "training state has a worker at document {} of {}..{}, outside the corpus's {docs} \
             documents",
            w.next_doc, w.next_doc, w.end_doc
        )));
    }
    if header.epoch > header.params.epochs || (header.epoch == header.params.epochs) != header.done
    {
        return Err(CssError::InvalidData(format!(
            "training state is at epoch {} of {} (done: {})",
            header.epoch, header.params.epochs, header.done
        )));
    }
    let planned = corpus.tokens().saturating_mul(header.params.epochs as u64);
    if header.epoch_tokens_start > header.tokens_done || header.tokens_done > planned {
        return Err(CssError::InvalidData(format!(
            "training state counts {} tokens done (epoch started at {}) of {planned} planned",
            header.tokens_done, header.epoch_tokens_start
        )));
    }
    let times = [header.elapsed, header.epoch_seconds];
    if times.iter().any(|t| !(t.is_finite() && *t >= 0.0)) {
        return Err(CssError::InvalidData(
            "training state has a negative or non-finite duration".to_string(),
        ));
    }
    Ok(())
}

/// Every frequency of a state's spectra is EMPTY or below D, at most once per word.
fn check_state_frequencies(freq: &[u16], k: usize, frequency_dim: usize) -> Result<()> {
    for (w, slots) in freq.chunks(k.max(1)).enumerate() {
        for (i, &f) in slots.iter().enumerate().filter(|&(_, &f)| f != EMPTY) {
            if f as usize >= frequency_dim || slots[..i].contains(&f) {
                return Err(CssError::InvalidData(format!(
                    "training state: word {w} has frequency {f} twice or outside 0..{frequency_dim}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{clustered_corpus, small_params, train_all};
    use super::super::Trainer;
    use super::*;
    use std::time::Duration;

    #[test]
    fn pausing_and_resuming_gives_the_same_spectra() {
        let (ids, offsets) = clustered_corpus(200, 2);
        let balanced = TrainParams {
            balance_gamma: 2.0,
            score_bias: 1.0,
            exploration_fraction: 0.6,
            ..small_params(1)
        };
        for params in [small_params(1), balanced] {
            let reference = train_all(params.clone(), &ids, &offsets).state_bytes();
            let counts = vec![100u64; 10];
            let corpus = Corpus::new(&ids, &offsets).unwrap();
            let mut t = Trainer::new(params.clone(), &counts, &corpus).unwrap();
            let mut steps = 0;
            while !t.is_done() {
                // Zero budget: every step does one work unit, then we round-trip the state.
                t.step(&corpus, Duration::ZERO).unwrap();
                let bytes = t.state_bytes();
                t = Trainer::resume(params.clone(), &counts, &corpus, &bytes).unwrap();
                steps += 1;
            }
            assert!(steps > 10);
            let reference = Trainer::resume(params, &counts, &corpus, &reference).unwrap();
            assert_eq!(t.spectra.to_raw(), reference.spectra.to_raw());
            assert_eq!(t.snapshot(), reference.snapshot());
        }
    }

    #[test]
    fn resume_rejects_other_settings_and_corrupt_state() {
        let (ids, offsets) = clustered_corpus(20, 4);
        let counts = vec![100u64; 10];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let t = Trainer::new(small_params(1), &counts, &corpus).unwrap();
        let bytes = t.state_bytes();
        let other = TrainParams {
            seed: 99,
            ..small_params(1)
        };
        assert!(Trainer::resume(other, &counts, &corpus, &bytes).is_err());
        assert!(
            Trainer::resume(small_params(1), &counts, &corpus, &bytes[..bytes.len() - 3]).is_err()
        );
        assert!(Trainer::resume(small_params(1), &counts, &corpus, b"garbage").is_err());
    }

    #[test]
    fn a_run_without_positions_still_checkpoints_and_resumes() {
        // One-word documents: no context, so no position and an epoch loss of NaN.
        let ids: Vec<u32> = (0..50).map(|i| i % 10).collect();
        let offsets: Vec<i64> = (0..=50).collect();
        let counts = vec![5u64; 10];
        let corpus = Corpus::new(&ids, &offsets).unwrap();
        let mut t = Trainer::new(small_params(1), &counts, &corpus).unwrap();
        t.step(&corpus, Duration::from_secs(60)).unwrap();
        assert!(t.is_done() && t.epoch_stats()[0].loss.is_nan());
        let back = Trainer::resume(small_params(1), &counts, &corpus, &t.state_bytes()).unwrap();
        assert!(back.is_done() && back.epoch_stats()[0].loss.is_nan());
    }
}
