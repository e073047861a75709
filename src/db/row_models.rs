//! Rows into entity models for `sqlite_reader`, which bypasses SeaORM's row decoding.
//! Result columns are matched to the entity's by name once per statement; each cell is
//! then read by position, as the kind of value the entity's column declares, and set on
//! the entity's active model. (SQLite's cells carry their own storage class, so the
//! declared kind decides how to read them; `pg_decode` reads PostgreSQL rows as the fields'
//! own types.)

use sea_orm::sea_query::{ColumnType, Value};
use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IdenStatic, Iterable, TryIntoModel};

/// The value a model's field holds, by the entity's declared column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Time,
    Json,
    Bool,
    Integer,
    Real,
    Text,
    Blob,
}

impl Kind {
    pub fn of(column: &ColumnType) -> Self {
        match column {
            ColumnType::Uuid => Self::Uuid,
            ColumnType::DateTime | ColumnType::Timestamp | ColumnType::TimestampWithTimeZone => Self::Time,
            ColumnType::Json | ColumnType::JsonBinary => Self::Json,
            ColumnType::Boolean => Self::Bool,
            ColumnType::TinyInteger
            | ColumnType::SmallInteger
            | ColumnType::Integer
            | ColumnType::BigInteger
            | ColumnType::TinyUnsigned
            | ColumnType::SmallUnsigned
            | ColumnType::Unsigned
            | ColumnType::BigUnsigned => Self::Integer,
            ColumnType::Float | ColumnType::Double | ColumnType::Decimal(_) | ColumnType::Money(_) => Self::Real,
            ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_) => Self::Blob,
            _ => Self::Text,
        }
    }
}

/// Each result column's entity column and kind, in result order; `None` for a result
/// column the entity does not have (it is skipped).
pub struct Columns<E: EntityTrait>(Vec<Option<(E::Column, Kind)>>);

impl<E: EntityTrait> Columns<E> {
    pub fn by_name<'n>(names: impl IntoIterator<Item = &'n str>) -> Self {
        Self(
            names
                .into_iter()
                .map(|name| {
                    E::Column::iter()
                        .find(|c| c.as_str() == name)
                        .map(|c| (c, Kind::of(c.def().get_column_type())))
                })
                .collect(),
        )
    }

    /// How many result columns were matched (whether to an entity column or to none).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// One model from one row: `cell(index, kind)` reads the cell at `index` as `kind`,
    /// or `None` when the stored value cannot be read as that kind.
    pub fn model(&self, mut cell: impl FnMut(usize, Kind) -> Result<Option<Value>, DbErr>) -> Result<E::Model, DbErr>
    where
        E::ActiveModel: TryIntoModel<E::Model>,
    {
        let mut active = <E::ActiveModel as ActiveModelTrait>::default();
        for (index, column) in self.0.iter().enumerate() {
            let Some((column, kind)) = column else { continue };
            let value = cell(index, *kind)?.ok_or_else(|| {
                DbErr::Type(format!(
                    "column {}: the stored value is not a {kind:?}",
                    column.as_str()
                ))
            })?;
            // A null where the model holds a value: name the column, as a wrong type does.
            active
                .try_set(*column, value)
                .map_err(|e| DbErr::Type(format!("column {}: {e}", column.as_str())))?;
        }
        active.try_into_model()
    }
}
