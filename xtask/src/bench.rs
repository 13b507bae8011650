pub fn run(_which: &str) -> std::process::ExitCode { std::process::ExitCode::SUCCESS }
