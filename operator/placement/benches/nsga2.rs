//! NSGA-II on ZDT1 with the default settings (population 100, 250
//! generations): the baseline for later placement benchmarks.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fedsky_placement::problems::Zdt1;
use fedsky_placement::{Nsga2Settings, nsga2};

fn zdt1(c: &mut Criterion) {
    let problem = Zdt1::default();
    let settings = Nsga2Settings {
        population: 100,
        generations: 250,
        ..Nsga2Settings::default()
    };
    let mut group = c.benchmark_group("nsga2");
    // One run takes ~16 ms in release; ten samples in 10 s are plenty.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("zdt1_pop100_gen250", |b| {
        b.iter(|| nsga2(black_box(&problem), black_box(&settings)))
    });
    group.finish();
}

criterion_group!(benches, zdt1);
criterion_main!(benches);
