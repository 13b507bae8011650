pub mod assert;
pub mod git;
pub mod plan;
pub mod report;
pub mod run;
