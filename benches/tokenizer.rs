//! Tokenizer and counting throughput (MB/s) on generated English-like text.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use css_rs::tokenizer::for_each_token;
use css_rs::vocabulary::count_texts;

fn corpus() -> Vec<String> {
    // A fixed pseudo-random mix of words, so the bench needs no data files.
    let words = [
        "the",
        "of",
        "a",
        "to",
        "in",
        "word",
        "spectrum",
        "frequency",
        "café",
        "learning",
        "amplitude",
        "phase",
        "2024",
        "under_score",
        "dictionary",
        "definition",
        "Noun",
        "verb",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..20_000)
        .map(|_| {
            let mut line = String::new();
            for _ in 0..40 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.push_str(words[(state % words.len() as u64) as usize]);
                line.push_str(if state % 7 == 0 { ", " } else { " " });
            }
            line
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let texts = corpus();
    let bytes: usize = texts.iter().map(String::len).sum();
    let mut g = c.benchmark_group("text");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("tokenize_single_thread", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for t in &texts {
                for_each_token(t, |_| n += 1);
            }
            n
        })
    });
    g.bench_function("count_parallel", |b| b.iter(|| count_texts(&texts).1));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
