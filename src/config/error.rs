//! The error type of configuration loading: a read failure, or a rule broken at a position.
//!
//! Positions are kept as byte spans while validating (see [`Issue`]) and turned into 1-based
//! line and column numbers only when the error is built, so every message reads
//! `FILE:LINE:COL: message` — the format `canaryd check`, start-up and reload print.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{}: cannot read: {source}", .file.display())]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The file was read but breaks a syntax, type or validation rule.
    #[error("{}:{line}:{column}: {message}", .file.display())]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// 1-based line of the offending value, key or table.
        line: usize,
        /// 1-based column, counted in characters (not bytes) from the start of the line.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    /// A reload found the file empty: most likely caught between truncate and write.
    pub fn empty(file: &Path) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
            message: "the file is empty (still being written?); the running configuration is kept"
                .to_owned(),
        }
    }

    /// Builds a positioned error from a byte offset into `text`, the file's contents.
    pub(crate) fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(text, offset);
        ConfigError::Invalid {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// The configuration file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            ConfigError::Read { file, .. } | ConfigError::Invalid { file, .. } => file,
        }
    }

    /// 1-based line of the problem; `None` when the file could not be read.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => Some(*line),
            ConfigError::Read { .. } => None,
        }
    }

    /// 1-based column (in characters) of the problem; `None` when the file could not be read.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { column, .. } => Some(*column),
            ConfigError::Read { .. } => None,
        }
    }

    /// The message without the `FILE:LINE:COL: ` prefix.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Invalid { message, .. } => message.clone(),
            ConfigError::Read { source, .. } => format!("cannot read: {source}"),
        }
    }
}

/// One broken rule found while validating: where (a byte span of the source) and what.
///
/// Validation collects these and reports the earliest one in the file, so an operator fixing
/// errors top to bottom always sees the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    /// Byte span of the offending value, key or table header.
    pub span: Range<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Issue {
    /// An issue at `span`.
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Issue {
            span,
            message: message.into(),
        }
    }
}

/// Converts a byte offset into a 1-based (line, column) pair, the column counted in characters
/// so that non-ASCII text before the error does not shift it.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    // A span from the TOML parser always sits on a char boundary, but never trust it blindly:
    // slicing off a boundary would panic.
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 4), (1, 5));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 11), (2, 6));
    }

    #[test]
    fn column_counts_characters_not_bytes() {
        let text = "k = \"é\" x";
        // 'x' is the 9th character but the 10th byte.
        assert_eq!(line_col(text, 9), (1, 9));
    }

    #[test]
    fn offset_past_the_end_is_clamped() {
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn display_is_file_line_col_message() {
        let err = ConfigError::at(Path::new("c.toml"), "x\ny = 1", 6, "bad");
        assert_eq!(err.to_string(), "c.toml:2:5: bad");
        assert_eq!(err.line(), Some(2));
        assert_eq!(err.column(), Some(5));
        assert_eq!(err.message(), "bad");
    }

    #[test]
    fn read_error_keeps_its_source() {
        use std::error::Error as _;
        let err = ConfigError::Read {
            file: PathBuf::from("c.toml"),
            source: io::Error::new(io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(err.to_string(), "c.toml: cannot read: gone");
        assert!(err.source().is_some());
        assert_eq!(err.line(), None);
        assert_eq!(err.column(), None);
    }
}
