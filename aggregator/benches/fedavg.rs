//! Streaming FedAvg over 10 updates of 1M f32 parameters: the fold alone, and
//! the full path from safetensors bytes (validate + fold). A start for the
//! side-by-side comparison with Flower.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedsky_aggregator::strategy::FedAvg;
use fedsky_aggregator::{Model, Strategy, TensorData, UpdateLimits, decode_update};

const PARAMS: usize = 1 << 20;
const UPDATES: usize = 10;

fn model(seed: u32) -> Model {
    // Cheap deterministic values; their exact distribution does not matter here.
    let data: Vec<f32> = (0..PARAMS)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 * 1e-7)
        .collect();
    // Two tensors, as a real model has several.
    let (w, b) = data.split_at(PARAMS - 1024);
    Model::new([
        (
            "layer.weight",
            vec![PARAMS - 1024],
            TensorData::F32(w.to_vec()),
        ),
        ("layer.bias", vec![1024], TensorData::F32(b.to_vec())),
    ])
    .expect("valid bench model")
}

fn bench(c: &mut Criterion) {
    let global = model(0);
    let updates: Vec<Model> = (1..=UPDATES as u32).map(model).collect();
    let encoded: Vec<Vec<u8>> = updates
        .iter()
        .map(|m| m.to_safetensors().expect("encode"))
        .collect();
    let limits = UpdateLimits::for_spec(global.spec());

    let mut group = c.benchmark_group("fedavg_10x1M_f32");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((UPDATES * PARAMS * 4) as u64));

    group.bench_function("fold", |b| {
        b.iter(|| {
            let mut s = FedAvg::new();
            s.begin_round(1, &global).expect("begin");
            for (i, u) in updates.iter().enumerate() {
                s.accept(&u.view(), 100 + i as u64).expect("accept");
            }
            black_box(s.finish().expect("finish"))
        });
    });

    group.bench_function("decode_validate_fold", |b| {
        b.iter(|| {
            let mut s = FedAvg::new();
            s.begin_round(1, &global).expect("begin");
            for (i, bytes) in encoded.iter().enumerate() {
                let view = decode_update(bytes, &global, &limits).expect("valid update");
                s.accept(&view, 100 + i as u64).expect("accept");
            }
            black_box(s.finish().expect("finish"))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
