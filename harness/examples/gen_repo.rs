fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let root = std::path::PathBuf::from(std::env::args().nth(2).unwrap());
    for (p, t) in harness::generate::flux_repo(n) {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
}
