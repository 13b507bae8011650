pub mod assert;
pub mod plan;
pub mod report;
pub mod run;
