pub mod assert;
mod execute;
pub mod git;
pub mod plan;
pub mod provider;
pub mod report;
pub mod run;
pub mod served;
pub mod suites;
