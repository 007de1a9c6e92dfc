"""Every setting is validated at start; a bad one is one line naming the variable (the CLI exits 2)."""

import pytest

from processor.settings import Settings, SettingsError


@pytest.mark.parametrize("variable,value,says", [
    ("COTERM_PAIRING_TIMEOUT_S", "soon", "is not a number"),
    ("COTERM_PAIRING_TIMEOUT_S", "nan", "finite number greater than zero"),
    ("COTERM_PAIRING_TIMEOUT_S", "inf", "finite number greater than zero"),
    ("COTERM_READY_MAX_LAG_S", "-1", "finite number greater than zero"),
    ("COTERM_KAFKA_CONNECT_TIMEOUT_S", "0", "finite number greater than zero"),
    ("COTERM_VENDOR_MAX_ATTEMPTS", "1.5", "is not a whole number"),
    ("COTERM_VENDOR_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
    ("COTERM_VENDOR_URL", "notaurl", "http:// or https:// URL"),
    ("COTERM_VENDOR_URL", "ftp://vendor", "http:// or https:// URL"),
    ("COTERM_VENDOR_URL", "http://vendor:port", "port that is not a number"),
    ("COTERM_STORE", "mysql://db/x", "SQLite file path or a postgresql:// URL"),
    ("COTERM_TOPIC_ORDERS", "orders v1", "letters, digits"),
    ("COTERM_TOPIC_RESULTS", "x" * 250, "1-249 characters"),
    ("COTERM_KAFKA_BOOTSTRAP", "localhost", "host:port"),
    ("COTERM_KAFKA_SECURITY_PROTOCOL", "TLS", "'PLAINTEXT'"),
    ("COTERM_KAFKA_SASL_MECHANISM", "GSSAPI", "'PLAIN'"),
    ("COTERM_KAFKA_SSL_CAFILE", "/no/such/ca.pem", "not a readable file"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}={value!r}: ") and says in message and "\n" not in message


def test_good_values_and_defaults() -> None:
    s = Settings.from_env({"COTERM_VENDOR_URL": "https://vendor.example:8443/", "COTERM_PAIRING_TIMEOUT_S": "60",
                           "COTERM_KAFKA_BOOTSTRAP": "k1:9092, k2:9092", "COTERM_GROUP_ID": "  ", "COTERM_STORE": ""})
    assert s.vendor_url == "https://vendor.example:8443" and s.pairing_timeout_s == 60
    assert s.group_id == "coterm-processor" and s.store == "./var/coterm.sqlite"  # empty counts as unset
    assert s.kafka_options() == {}


def test_kafka_security_settings_reach_the_clients_and_the_password_is_never_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = Settings.from_env({"COTERM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "COTERM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                           "COTERM_KAFKA_SASL_USERNAME": "coterm", "COTERM_KAFKA_SASL_PASSWORD": "s3cret",
                           "COTERM_KAFKA_SSL_CAFILE": str(ca)})
    assert s.kafka_options() == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                 "sasl_plain_username": "coterm", "sasl_plain_password": "s3cret", "ssl_cafile": str(ca)}
    assert "s3cret" not in repr(s)
