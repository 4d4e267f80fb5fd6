//! The corpus a trainer reads: token ids and document offsets, checked once, and a cheap
//! fingerprint so that a state is never resumed against other data.

use crate::error::{CssError, Result};

/// A tokenised corpus: all token ids, and `num_docs + 1` offsets into them.
#[derive(Clone, Copy)]
pub struct Corpus<'a> {
    pub ids: &'a [u32],
    pub offsets: &'a [i64],
}

impl<'a> Corpus<'a> {
    /// Checks the offsets. Token ids are checked as training reads them (see
    /// `train_document`): a scan here would make a memory-mapped corpus resident all at once.
    pub fn new(ids: &'a [u32], offsets: &'a [i64]) -> Result<Self> {
        if offsets.is_empty() || offsets[0] != 0 {
            return Err(CssError::InvalidData(
                "corpus offsets must start with 0 (one more offset than documents)".to_string(),
            ));
        }
        if *offsets.last().unwrap_or(&0) != ids.len() as i64 {
            return Err(CssError::InvalidData(format!(
                "corpus offsets end at {} but there are {} token ids",
                offsets.last().unwrap_or(&0),
                ids.len()
            )));
        }
        if offsets.windows(2).any(|w| w[1] < w[0]) {
            return Err(CssError::InvalidData(
                "corpus offsets must not decrease".to_string(),
            ));
        }
        Ok(Corpus { ids, offsets })
    }

    pub fn num_docs(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn tokens(&self) -> u64 {
        self.ids.len() as u64
    }

    #[inline]
    pub(super) fn doc(&self, i: usize) -> &'a [u32] {
        &self.ids[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// A cheap identity of the corpus, so that a checkpoint is never resumed against other
    /// data: the sizes and the first and last 1024 ids and offsets. Only the ends, on
    /// purpose: a read of a memory-mapped file maps the whole page-cache folio around it (up
    /// to 2 MB), so even 64 samples spread over a 160 MB corpus made 110 MB of it resident.
    /// (The pipeline also checksums its corpus files.)
    pub fn fingerprint(&self) -> u64 {
        const ENDS: usize = 1024;
        let mut h: u64 = 0xCBF2_9CE4_8422_2325;
        let mut mix = |x: u64| {
            h ^= x;
            h = h.wrapping_mul(0x0100_0000_01B3);
        };
        mix(self.ids.len() as u64);
        mix(self.offsets.len() as u64);
        let ends = |n: usize| (0..n.min(ENDS)).chain(n.saturating_sub(ENDS).max(ENDS)..n);
        for i in ends(self.ids.len()) {
            mix(self.ids[i] as u64);
        }
        for i in ends(self.offsets.len()) {
            mix(self.offsets[i] as u64);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_validation() {
        assert!(Corpus::new(&[1, 2], &[0, 2]).is_ok());
        assert!(Corpus::new(&[1, 2], &[0, 1]).is_err());
        assert!(Corpus::new(&[1, 2], &[1, 2]).is_err());
        assert!(Corpus::new(&[1, 2], &[0, 2, 1, 2]).is_err());
    }
}
