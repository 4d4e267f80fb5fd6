//! Negative sampling: Walker's alias method over unigram^0.75 (or uniform) in O(1) per draw
//! and O(V) memory, instead of word2vec's 100-million-entry table.

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub struct AliasSampler {
    prob: Vec<f32>,
    alias: Vec<u32>,
}

impl AliasSampler {
    /// Samples word `i` with probability proportional to `weights[i]`.
    pub fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob = vec![1.0f32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        if n == 0 || total <= 0.0 {
            return AliasSampler { prob, alias };
        }
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s] as f32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers (rounding) keep probability 1 with themselves as alias.
        AliasSampler { prob, alias }
    }

    /// unigram^power over the counts (word2vec's 0.75).
    pub fn unigram(counts: &[u64], power: f64) -> Self {
        let w: Vec<f64> = counts.iter().map(|&c| (c as f64).powf(power)).collect();
        Self::new(&w)
    }

    pub fn uniform(n: usize) -> Self {
        Self::new(&vec![1.0; n])
    }

    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        let i = rng.below(self.prob.len());
        // Both sides read first, so the choice compiles to a select: which side wins is a
        // coin flip that a branch would mispredict.
        let (own, alias) = (i as u32, self.alias[i]);
        if rng.next_f32() < self.prob[i] {
            own
        } else {
            alias
        }
    }

    pub fn len(&self) -> usize {
        self.prob.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prob.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_follow_weights() {
        let s = AliasSampler::new(&[1.0, 2.0, 7.0, 0.0]);
        let mut rng = Rng::new(1);
        let mut hist = [0usize; 4];
        let n = 200_000;
        for _ in 0..n {
            hist[s.sample(&mut rng) as usize] += 1;
        }
        let f: Vec<f64> = hist.iter().map(|&h| h as f64 / n as f64).collect();
        assert!((f[0] - 0.1).abs() < 0.01, "{f:?}");
        assert!((f[1] - 0.2).abs() < 0.01, "{f:?}");
        assert!((f[2] - 0.7).abs() < 0.01, "{f:?}");
        assert_eq!(hist[3], 0);
    }
}
