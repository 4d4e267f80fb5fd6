//! Small corpora and settings shared by the trainer's unit tests.

use super::{Corpus, TrainParams, Trainer};
use crate::rng::Rng;
use std::time::Duration;

/// Two clusters of words that share contexts: words 0..5 and 5..10.
pub(super) fn clustered_corpus(docs: usize, seed: u64) -> (Vec<u32>, Vec<i64>) {
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    let mut offsets = vec![0i64];
    for d in 0..docs {
        let base = if d % 2 == 0 { 0 } else { 5 };
        for _ in 0..20 {
            ids.push(base + rng.below(5) as u32);
        }
        offsets.push(ids.len() as i64);
    }
    (ids, offsets)
}

pub(super) fn small_params(threads: usize) -> TrainParams {
    TrainParams {
        frequency_dim: 40,
        max_frequencies: 4,
        epochs: 3,
        threads,
        sample: 0.0,
        training_batch_size: 7,
        ..TrainParams::default()
    }
}

pub(super) fn train_all(params: TrainParams, ids: &[u32], offsets: &[i64]) -> Trainer {
    let counts = vec![100u64; 10];
    let corpus = Corpus::new(ids, offsets).unwrap();
    let mut t = Trainer::new(params, &counts, &corpus).unwrap();
    while !t.is_done() {
        t.step(&corpus, Duration::from_secs(60)).unwrap();
    }
    t
}

/// `clusters` groups of 6 words; each document draws 20 words of one group.
pub(super) fn many_clusters(clusters: u32, docs: usize, seed: u64) -> (Vec<u32>, Vec<i64>) {
    let mut rng = Rng::new(seed);
    let (mut ids, mut offsets) = (Vec::new(), vec![0i64]);
    for _ in 0..docs {
        let base = 6 * rng.below(clusters as usize) as u32;
        ids.extend((0..20).map(|_| base + rng.below(6) as u32));
        offsets.push(ids.len() as i64);
    }
    (ids, offsets)
}
