use weir::prelude::*;
fn main() {
    for p in [1usize, 2] {
        let env = StreamEnv::new();
        env.set_parallelism(p);
        let n = 20_000_000u64;
        env.generate_sequence(0..n).map(|x| x * 2).key_by(|x| x % 1024).reduce(|a, b| a + b).discard();
        let t = std::time::Instant::now();
        let r = env.execute().unwrap();
        let s = t.elapsed().as_secs_f64();
        println!("p={p} {:.1} M rec/s", n as f64 / s / 1e6);
        print!("{}", r.metrics.table());
    }
}
