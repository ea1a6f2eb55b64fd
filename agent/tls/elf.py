"""The section names and defined symbols of an ELF file: enough to tell a Go binary, a
stripped one, and an executable that links OpenSSL or BoringSSL statically.

Reads only the headers, the section name table and the symbol tables (seeks, never the
whole file). 64-bit little-endian ELF only (x86-64, arm64); anything else is "not ELF".
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_SHT_SYMTAB = 2
_SHT_DYNSYM = 11
_STT_FUNC = 2
_GO_VERSION = re.compile(rb"go1\.\d+(\.\d+)?")
# a symbol table larger than this is not read (a guard against a corrupt header)
MAX_TABLE_BYTES = 256 << 20


@dataclass
class ElfInfo:
    sections: set[str] = field(default_factory=set)
    # of the names asked for: those defined (a function in a section) in .symtab or .dynsym
    defined: set[str] = field(default_factory=set)
    # names of defined functions containing one of the substrings asked for (first few)
    matching: set[str] = field(default_factory=set)
    has_symtab: bool = False
    go_version: str = ""  # "go1.26.8", from .go.buildinfo (Go executables)


def _read(f: BinaryIO, off: int, size: int) -> bytes:
    f.seek(off)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated ELF file")
    return data


def inspect(
    f: BinaryIO, names: Iterable[str] = (), substrings: Iterable[bytes] = ()
) -> ElfInfo | None:
    """ElfInfo of the ELF file f, or None when f is not a 64-bit little-endian ELF file (or
    a truncated or corrupt one)."""
    try:
        return _inspect(f, names, substrings)
    except (ValueError, struct.error, IndexError, OverflowError):
        return None


def _inspect(f: BinaryIO, names: Iterable[str], substrings: Iterable[bytes]) -> ElfInfo | None:
    head = f.read(_EHDR.size)
    if len(head) < _EHDR.size or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    fields = _EHDR.unpack(head)
    shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if not shoff or shentsize != _SHDR.size or not shnum:
        return ElfInfo()
    table = _read(f, shoff, shentsize * shnum)
    shdrs = [_SHDR.unpack_from(table, i * shentsize) for i in range(shnum)]
    info = ElfInfo()
    strs = shdrs[shstrndx] if shstrndx < shnum else None
    names_tab = _read(f, strs[4], strs[5]) if strs and strs[5] < MAX_TABLE_BYTES else b""
    for sh in shdrs:
        end = names_tab.find(b"\0", sh[0])
        info.sections.add(names_tab[sh[0] : end].decode("latin-1") if end >= 0 else "")
    for sh in shdrs:
        end = names_tab.find(b"\0", sh[0])
        if names_tab[sh[0] : end] == b".go.buildinfo" and sh[4]:
            m = _GO_VERSION.search(_read(f, sh[4], min(sh[5], 1 << 16)))
            info.go_version = m.group(0).decode() if m else ""
    wanted = {n.encode() for n in names}
    subs = tuple(substrings)
    for sh in shdrs:
        if sh[1] not in (_SHT_SYMTAB, _SHT_DYNSYM) or sh[5] > MAX_TABLE_BYTES:
            continue
        if sh[1] == _SHT_SYMTAB:
            info.has_symtab = True
        link = shdrs[sh[6]] if sh[6] < shnum else None
        if link is None or link[5] > MAX_TABLE_BYTES:
            continue
        strtab = _read(f, link[4], link[5])
        if not any(w in strtab for w in wanted) and not any(s in strtab for s in subs):
            continue  # none of the names is there at all: skip parsing the symbols
        syms = _read(f, sh[4], sh[5])
        for st_name, st_info, _other, shndx, _value, _size in _SYM.iter_unpack(
            syms[: len(syms) - len(syms) % _SYM.size]
        ):
            if shndx == 0 or st_info & 0xF != _STT_FUNC:
                continue  # undefined (imported) or not a function
            end = strtab.find(b"\0", st_name)
            name = strtab[st_name:end]
            if name in wanted:
                info.defined.add(name.decode())
            elif subs and len(info.matching) < 8 and any(s in name for s in subs):
                info.matching.add(name.decode("latin-1"))
    return info


def inspect_path(
    path: str, names: Iterable[str] = (), substrings: Iterable[bytes] = ()
) -> ElfInfo | None:
    """inspect() of the file at path; None when it cannot be read or is not ELF."""
    try:
        with open(path, "rb") as f:
            return inspect(f, names, substrings)
    except OSError:
        return None
