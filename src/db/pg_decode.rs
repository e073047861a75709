//! PostgreSQL rows into entity models by position. sqlx's `FromRow` derive finds every
//! cell by name (a hashed lookup) and checks its SQL type against the field's type, on
//! every row; callgrind put the two at 6% of a trace detail's instructions. Both answers
//! are the same for every row of a statement, so they are settled once, on its first
//! row: where each field's column is, and whether every column's type decodes as its
//! field. The rows are then read by position without the check. A statement whose
//! columns do not all match (a cast gone wrong, say) is read by name with every cell
//! checked, as the derive would, so its errors still name the column.

use sea_orm::sqlx::postgres::{PgRow, Postgres};
use sea_orm::sqlx::{self, Column, Decode, Row, Type};

/// A model whose fields are read from PostgreSQL rows by position (`by_position!`).
pub trait ByPosition: Sized {
    /// The fields, named as their columns, in declaration order.
    const FIELDS: &'static [&'static str];

    /// Whether the column at `at[i]` has a type that decodes as field `i`, for every field.
    fn types_match(row: &PgRow, at: &[usize]) -> bool;

    /// One model; `at` (from `positions`) says where each field is, `None` to read by
    /// name with each cell's type checked.
    fn decode(row: &PgRow, at: Option<&[usize]>) -> Result<Self, sqlx::Error>;
}

/// Where each field of `M` is among the columns of `row`'s statement, if every one is
/// there with a type that decodes as its field; `None` means read by name.
pub fn positions<M: ByPosition>(row: &PgRow) -> Option<Vec<usize>> {
    let columns = row.columns();
    let at: Vec<usize> = M::FIELDS
        .iter()
        .map(|field| columns.iter().position(|c| c.name() == *field))
        .collect::<Option<_>>()?;
    M::types_match(row, &at).then_some(at)
}

/// Whether the column at `position` decodes as `T`; the accessor only names `T`.
pub fn decodes_as<M, T: Type<Postgres>>(row: &PgRow, position: usize, _field: fn(&M) -> &T) -> bool {
    T::compatible(row.columns()[position].type_info())
}

/// The cell of field `name`: at its position unchecked when its statement's types
/// matched, else found by name and checked.
pub fn cell<'r, T>(row: &'r PgRow, at: Option<&[usize]>, field: usize, name: &str) -> Result<T, sqlx::Error>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    match at.and_then(|at| at.get(field)) {
        Some(&position) => row.try_get_unchecked(position).map_err(|e| match e {
            sqlx::Error::ColumnDecode { source, .. } => sqlx::Error::ColumnDecode {
                index: format!("{name:?}"),
                source,
            },
            other => other,
        }),
        None => row.try_get(name),
    }
}

/// Implements `ByPosition` for a model from its field names, in declaration order. A
/// field left out, or one the model lacks, does not compile.
#[macro_export]
macro_rules! by_position {
    ($model:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::db::pg_decode::ByPosition for $model {
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),+];

            fn types_match(row: &::sea_orm::sqlx::postgres::PgRow, at: &[usize]) -> bool {
                let mut at = at.iter();
                true $(&& at.next().is_some_and(|&position| {
                    $crate::db::pg_decode::decodes_as(row, position, |model: &Self| &model.$field)
                }))+
            }

            fn decode(
                row: &::sea_orm::sqlx::postgres::PgRow,
                at: Option<&[usize]>,
            ) -> Result<Self, ::sea_orm::sqlx::Error> {
                let mut field = 0usize;
                let mut next = || {
                    field += 1;
                    field - 1
                };
                Ok(Self {
                    $($field: $crate::db::pg_decode::cell(row, at, next(), stringify!($field))?,)+
                })
            }
        }

        impl $crate::db::pg_decode::FromPlainRow for $model {
            fn decode_plain(row: &::tokio_postgres::Row, at: &[usize]) -> Result<Self, String> {
                let mut at = at.iter().copied();
                // `at` has a position for every field (`plain_positions`).
                Ok(Self {
                    $($field: row
                        .try_get(at.next().unwrap_or(usize::MAX))
                        .map_err(|e| $crate::db::pg_decode::plain_cell_error(stringify!($field), e))?,)+
                })
            }
        }
    };
}

/// A model read from the rows of `pg_pipeline` (tokio-postgres), implemented by
/// `by_position!` with `ByPosition`. Each cell's type is checked as it is read.
pub trait FromPlainRow: ByPosition {
    /// One model, or what is wrong with the cell of which field.
    fn decode_plain(row: &tokio_postgres::Row, at: &[usize]) -> Result<Self, String>;
}

/// A cell that does not decode as its field, named.
pub fn plain_cell_error(field: &str, e: tokio_postgres::Error) -> String {
    match std::error::Error::source(&e) {
        Some(cause) => format!("column {field:?}: {cause}"),
        None => format!("column {field:?}: {e}"),
    }
}

/// Where each field of `M` is among `row`'s columns, or the first one missing.
pub fn plain_positions<M: ByPosition>(row: &tokio_postgres::Row) -> Result<Vec<usize>, String> {
    let columns = row.columns();
    M::FIELDS
        .iter()
        .map(|field| {
            columns
                .iter()
                .position(|c| c.name() == *field)
                .ok_or_else(|| format!("no column {field:?} in the result"))
        })
        .collect()
}
