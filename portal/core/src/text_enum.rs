//! Enums that are stored and sent as text: one declaration gives the
//! variants, their names, `ALL`, `as_str`, `parse` and `Display`, and serde
//! uses the same names, so a name is written once.

/// `text_enum! { /// doc
/// pub enum Name { Variant = "text", .. } }`
macro_rules! text_enum {
    (@count) => { 0usize };
    (@count $head:ident $($tail:ident)*) => { 1usize + text_enum!(@count $($tail)*) };
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; text_enum!(@count $($variant)+)] = [$($name::$variant),+];

            /// The name stored in the database and sent over the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The variant with this exact name.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
