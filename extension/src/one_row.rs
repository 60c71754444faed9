//! SPI answers of at most one row. pgrx 0.18's `Spi::get_one*` report a query that returned no
//! row as an error (`InvalidPosition`), not as `None`; [`optional`] turns that case into
//! `Ok(None)`, so "no such pipeline" reads as such rather than as an SPI error.

use pgrx::spi::SpiError;

/// `Ok(None)` for a query that returned no row; anything else as it was.
pub fn optional<T>(r: Result<Option<T>, SpiError>) -> Result<Option<T>, SpiError> {
    match r {
        Err(SpiError::InvalidPosition) | Err(SpiError::NoTupleTable) => Ok(None),
        other => other,
    }
}
