//! OpenAPI schemas (utoipa) of the wire types whose JSON form is not what their Rust type
//! says: [`Timestamp`] (an RFC 3339 string), the drasi-server config's scalars that also accept
//! a string (`lenient` in `drasi/`: [`Count`], [`Flag`]; settings fields, which also take a
//! whole-value `${VAR}` reference: [`CountSetting`], [`FlagSetting`], and `drasi/port/`:
//! [`Port`]), a mock source's closed
//! `dataType`, and a postgres source's `bootstrapProvider`. Schemas only: nothing here is
//! constructed or parsed at run time.

use utoipa::openapi::schema::{
    AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::time::Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("A point in time, RFC 3339 in UTC with milliseconds."))
            .examples(["2026-01-01T00:00:00.123Z"])
            .into()
    }
}

impl ToSchema for Timestamp {}

/// A string alternative of a lenient scalar: what drasi-server accepts after `${VAR}`
/// interpolation inside quotes.
fn as_string(pattern: &str, what: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(format!(
            "The same {what} written as a string (surrounding spaces ignored)"
        )))
}

/// A whole-value `${VAR}` / `${VAR:-default}` reference (drasi-server's rule: the whole
/// string, `${{…}}` excepted), resolved from the instance's `env` and then read as `what`.
fn reference(what: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^\$\{([^{][\s\S]*)?\}$"))
        .description(Some(format!(
            "A `${{VAR}}` or `${{VAR:-default}}` reference, the whole value: resolved from the \
             instance's `env` when it starts, then read as {what}"
        )))
        .examples([example])
}

/// A TCP port ([`crate::drasi::Port`]): an integer 0–65535, the same number as a string, or
/// a string that is one whole `${VAR}` / `${VAR:-default}` reference (drasi-server's
/// `ConfigValue<u16>`), resolved from the instance's `env` and then read as the number.
pub struct Port;

impl PartialSchema for Port {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(65535)),
            )
            .item(as_string(r"^\s*\+?[0-9]{1,5}\s*$", "port"))
            .item(reference("the port number", "${DB_PORT:-5432}"))
            .description(Some(
                "A TCP port, 0–65535; a string holding the number, or a whole-value `${VAR}` \
                 reference resolving to it, is accepted too.",
            ))
            .into()
    }
}

impl ToSchema for Port {}

/// A non-negative integer, or the same number as a string.
pub struct Count;

impl PartialSchema for Count {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .item(as_string(r"^\s*\+?[0-9]{1,19}\s*$", "number"))
            .description(Some(
                "A non-negative integer; a string holding the number is accepted too.",
            ))
            .into()
    }
}

impl ToSchema for Count {}

/// A boolean, or `"true"` / `"false"`.
pub struct Flag;

impl PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(as_string(r"^\s*(true|false)\s*$", "boolean"))
            .description(Some(
                "A boolean; the strings \"true\" and \"false\" are accepted too.",
            ))
            .into()
    }
}

impl ToSchema for Flag {}

/// A numeric settings field ([`crate::drasi::Setting`], drasi-server's `ConfigValue<u64>`):
/// a [`Count`], or a whole-value `${VAR}` reference resolving to one.
pub struct CountSetting;

impl PartialSchema for CountSetting {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .item(as_string(r"^\s*\+?[0-9]{1,19}\s*$", "number"))
            .item(reference("the number", "${TIMEOUT_MS:-5000}"))
            .description(Some(
                "A non-negative integer; a string holding the number, or a whole-value `${VAR}` \
                 reference resolving to it, is accepted too.",
            ))
            .into()
    }
}

impl ToSchema for CountSetting {}

/// A boolean settings field ([`crate::drasi::Setting`], drasi-server's `ConfigValue<bool>`):
/// a [`Flag`], or a whole-value `${VAR}` reference resolving to one.
pub struct FlagSetting;

impl PartialSchema for FlagSetting {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(as_string(r"^\s*(true|false)\s*$", "boolean"))
            .item(reference("the boolean", "${USE_TLS:-false}"))
            .description(Some(
                "A boolean; the strings \"true\" and \"false\", or a whole-value `${VAR}` \
                 reference resolving to one, are accepted too.",
            ))
            .into()
    }
}

impl ToSchema for FlagSetting {}

/// A mock source's `dataType`: every variant refuses keys it does not know.
pub struct MockDataTypeSchema;

impl PartialSchema for MockDataTypeSchema {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::OneOf(mut one_of)) = crate::drasi::MockDataType::schema() else {
            return crate::drasi::MockDataType::schema();
        };
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = item {
                object.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
        RefOr::T(Schema::OneOf(one_of))
    }
}

impl ToSchema for MockDataTypeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "MockDataType".into()
    }
}

/// A postgres source's `bootstrapProvider`: the id of an entry of `bootstrapProviders`, or
/// an inline provider.
pub struct BootstrapProviderRefSchema;

impl PartialSchema for BootstrapProviderRefSchema {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .pattern(Some(r"\S"))
                    .description(Some(
                        "The id of an entry of the instance's `bootstrapProviders`",
                    )),
            )
            .item(crate::drasi::BootstrapProviderConfig::schema())
            .description(Some(
                "Where the source's initial rows come from: the id of a `bootstrapProviders` \
                 entry, or an inline provider (`{kind: postgres, …}`; keys it leaves out are \
                 taken from this source).",
            ))
            .into()
    }
}

impl ToSchema for BootstrapProviderRefSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "BootstrapProviderRef".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <crate::drasi::BootstrapProviderConfig as ToSchema>::schemas(schemas);
    }
}
