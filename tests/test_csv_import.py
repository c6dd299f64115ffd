"""CSV files as owners' spreadsheets write them: Latin-1/Windows-1252, ``;``-separated, decimal commas
(Spanish Excel), tabs, byte-order marks; detected, said, and refused with a hint when unreadable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fednb.domain.data import csv_dialect
from fednb.domain.data.datasets import read_table
from fednb.errors import InvalidInput

SPANISH = "edad;peso;ciudad;ingresos\n34;70,5;Cádiz;1.234,50\n51;82,25;Logroño;2.500,00\n29;61,0;Ávila;980,75\n"


def write(tmp_path, text: str, encoding: str, name: str = "datos.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_a_spanish_excel_export_reads_with_accents_numbers_and_decimal_commas(tmp_path):
    path = write(tmp_path, SPANISH, "cp1252")
    dialect = csv_dialect.detect(path)
    assert (dialect.encoding, dialect.delimiter, dialect.decimal, dialect.thousands) == ("cp1252", ";", ",", ".")
    assert dialect.describe() == "Windows-1252, ';'-separated, decimal comma, '.' between thousands"
    df = read_table(path)
    assert list(df["ciudad"]) == ["Cádiz", "Logroño", "Ávila"]
    assert list(df["peso"]) == [70.5, 82.25, 61.0]
    assert list(df["ingresos"]) == [1234.5, 2500.0, 980.75]
    assert df.attrs["csv_dialect"] == dialect.describe()


@pytest.mark.parametrize("encoding, expected", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                                ("latin-1", "cp1252"), ("utf-16", "utf-16")])
def test_encodings(tmp_path, encoding, expected):
    path = write(tmp_path, "name,city,score\nAna,Cádiz,1.5\nJosé,Logroño,2.25\n", encoding)
    assert csv_dialect.detect(path).encoding == expected
    df = read_table(path)
    assert list(df.columns) == ["name", "city", "score"]  # no BOM glued to the first name
    assert list(df["city"]) == ["Cádiz", "Logroño"] and list(df["score"]) == [1.5, 2.25]


def test_bytes_outside_windows_1252_fall_back_to_latin_1(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_bytes(b"a,b\n1,\x81x\n2,y\n")  # 0x81 is undefined in Windows-1252
    assert csv_dialect.detect(path).encoding == "latin-1"
    assert read_table(path)["b"].tolist() == ["\x81x", "y"]


def test_tabs_and_pipes(tmp_path):
    assert csv_dialect.detect(write(tmp_path, "a\tb\tc\n1\t2\t3\n4\t5\t6\n", "utf-8")).delimiter == "\t"
    path = write(tmp_path, "a|b\n1|x, y\n2|z\n", "utf-8", "pipes.csv")
    assert csv_dialect.detect(path).delimiter == "|"
    assert read_table(path)["b"].tolist() == ["x, y", "z"]


def test_a_comma_separated_file_keeps_decimal_points_and_quoted_commas(tmp_path):
    path = write(tmp_path, 'id,label,value\n1,"Smith, J",3.5\n2,"Doe, A",4.25\n', "utf-8")
    dialect = csv_dialect.detect(path)
    assert (dialect.delimiter, dialect.decimal) == (",", ".")
    assert read_table(path)["value"].tolist() == [3.5, 4.25]


def test_an_unclear_decimal_mark_is_left_alone_and_said(tmp_path):
    path = write(tmp_path, "a;b\n1,5;2.5\n3,25;4.75\n", "utf-8")
    dialect = csv_dialect.detect(path)
    assert dialect.decimal == "." and "decimal mark unclear" in dialect.describe()
    df = read_table(path)
    assert df["b"].tolist() == [2.5, 4.75] and df["a"].tolist() == ["1,5", "3,25"]


def test_a_one_column_file_is_one_column(tmp_path):
    dialect = csv_dialect.detect(write(tmp_path, "age\n34\n51\n", "utf-8"))
    assert dialect.delimiter == "," and "one column" in dialect.describe()


def test_ragged_lines_get_a_hint_not_a_parser_trace(tmp_path):
    path = write(tmp_path, "a;b;c\n1;2\n3;4;5;6\n7\n", "utf-8")
    with pytest.raises(InvalidInput, match=r"cannot tell how the columns .* are separated.*CSV UTF-8"):
        read_table(path)


def test_a_binary_file_is_not_read_as_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00binary\x00xlsx\n\x00\x01")
    with pytest.raises(InvalidInput, match="does not look like a text"):
        read_table(path)


def test_the_owner_cli_says_what_it_detected(tmp_path):
    from fednb.domain import Domain

    Domain.init(tmp_path / "dom", "hospital-a").close()
    path = write(tmp_path, SPANISH * 1 + "".join(f"{20 + i};{60 + i},5;Cádiz;1.{100 + i},00\n" for i in range(40)),
                 "cp1252")
    out = subprocess.run([sys.executable, "-m", "fednb", "domain", "add-dataset", str(tmp_path / "dom"), str(path),
                          "--name", "pacientes"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert "reading datos.csv as Windows-1252, ';'-separated, decimal comma" in out.stdout
    assert "peso (numeric)" in out.stdout and "ciudad" in out.stdout

    bad = write(tmp_path, "a;b;c\n1;2\n3;4;5;6\n", "utf-8", "ragged.csv")
    out = subprocess.run([sys.executable, "-m", "fednb", "domain", "add-dataset", str(tmp_path / "dom"), str(bad),
                          "--name", "ragged"], capture_output=True, text=True, timeout=240)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "cannot tell how the columns" in out.stderr and len(out.stderr.strip().splitlines()) == 1
