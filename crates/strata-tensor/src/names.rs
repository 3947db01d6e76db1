//! Names chosen on the command line (`--optimizer adamw`, `--schedule cosine`, ...): one table
//! per choice gives the parser, the error that lists the choices, and the list `--help` shows,
//! so the three cannot drift apart.

/// A name that is not one of a choice's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{given}': choose {}", .choices.join(", "))]
pub struct UnknownName {
    /// What was being chosen (`--optimizer`, ...).
    pub what: &'static str,
    /// The name given.
    pub given: String,
    /// The allowed names.
    pub choices: &'static [&'static str],
}

/// Implements `NAMES`, `name`, `FromStr` and `Display` for a fieldless enum from one table, so
/// that parsing, error messages and `--help` share one list.
#[macro_export]
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every accepted name, in the order of the variants.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name of this value.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(s: &str) -> Result<Self, $crate::names::UnknownName> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err($crate::names::UnknownName { what: $what, given: s.to_string(), choices: Self::NAMES }),
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
