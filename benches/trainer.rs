//! The training inner loop alone: one epoch over a Zipf-distributed corpus, one thread, in
//! tokens per second. No Python, no I/O.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use css_rs::rng::Rng;
use css_rs::trainer::{Corpus, TrainParams, Trainer};
use std::time::Duration;

const VOCAB: usize = 30_000;
const TOKENS: usize = 400_000;

/// Ids drawn from a Zipf(1) law over `VOCAB` words, in documents of 20 tokens.
fn zipf_corpus() -> (Vec<u32>, Vec<i64>, Vec<u64>) {
    let harmonic: f64 = (1..=VOCAB).map(|r| 1.0 / r as f64).sum();
    let mut cdf = Vec::with_capacity(VOCAB);
    let mut acc = 0.0;
    for r in 1..=VOCAB {
        acc += 1.0 / (r as f64 * harmonic);
        cdf.push(acc);
    }
    let mut rng = Rng::new(42);
    let mut counts = vec![0u64; VOCAB];
    let ids: Vec<u32> = (0..TOKENS)
        .map(|_| {
            let u = rng.next_f32() as f64;
            let id = cdf.partition_point(|&c| c < u).min(VOCAB - 1);
            counts[id] += 1;
            id as u32
        })
        .collect();
    let offsets: Vec<i64> = (0..=TOKENS / 20).map(|d| (d * 20) as i64).collect();
    (ids, offsets, counts.into_iter().map(|c| c.max(1)).collect())
}

fn bench(c: &mut Criterion) {
    let (ids, offsets, counts) = zipf_corpus();
    let corpus = Corpus::new(&ids, &offsets).unwrap();
    let mut g = c.benchmark_group("train_epoch");
    g.throughput(Throughput::Elements(TOKENS as u64));
    g.sample_size(10);
    let phases = [("refinement", 0.0), ("exploration", 1.0)];
    // Each phase with the kernels this CPU picks (AVX2 where it has it) and with the scalar
    // ones, which train the same spectra: the difference is the SIMD gain.
    for ((phase, exploration_fraction), scalar) in
        phases.into_iter().flat_map(|p| [(p, false), (p, true)])
    {
        let params = TrainParams {
            epochs: 1,
            threads: 1,
            exploration_fraction,
            ..TrainParams::default()
        };
        let name = if scalar {
            format!("{phase}/scalar")
        } else {
            phase.to_string()
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut t = Trainer::new(params.clone(), &counts, &corpus).unwrap();
                if scalar {
                    t.use_scalar_kernels();
                }
                while !t.is_done() {
                    t.step(&corpus, Duration::from_secs(3600)).unwrap();
                }
                t.progress().tokens_done
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
