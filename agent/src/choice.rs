//! `choice!`: a closed set of string values as a Rust enum. An unknown value deserializes
//! to `Invalid` instead of failing, so that validation reports it together with every
//! other problem of the configuration (serde stops at its first error).

/// Declares `enum $name { $variant, …, Invalid }` read from the strings given, with
/// `as_str()` and `is_valid()`.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value outside the set; validation reports it.
            Invalid,
        }

        impl $name {
            /// The configuration spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Invalid => "(invalid)",
                }
            }

            /// Whether the value was one of the set.
            pub fn is_valid(self) -> bool {
                self != Self::Invalid
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                Ok(match text.as_ref() {
                    $( $text => Self::$variant, )+
                    _ => Self::Invalid,
                })
            }
        }
    };
}

pub(crate) use choice;
