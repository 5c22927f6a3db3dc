"""CRC-32C (Castagnoli), as TensorFlow checksums its checkpoint and table files, in NumPy.

CRC-32C is the reflected CRC with polynomial 0x82F63B78, initial register 0xFFFFFFFF and
final XOR 0xFFFFFFFF: `crc32c(b"123456789") == 0xE3069283`. `crc32c(data, crc)` extends a
previous value, like TensorFlow's `crc32c::Extend`: crc32c(a + b) == crc32c(b, crc32c(a)).
TensorFlow stores CRCs *masked* (`mask`, `unmask`), so that a CRC of data that itself
holds CRCs stays well distributed.

Speed: a byte-by-byte Python loop runs at about 1-2 MB/s, too slow for the ~10 MB of a
model checkpoint. `crc32c` instead runs the CRC over many equal-length lanes of the input
at once (one NumPy operation per 4 bytes of every lane, with two 65536-entry tables), then
merges the lanes' CRCs pairwise: the CRC register is linear over GF(2), so
reg(A + B) = shift(reg(A), len(B)) XOR reg(B), where shift by n zero bytes is a 32x32 bit
matrix applied through four 256-entry tables. Leading zero bytes do not change a register
that starts at 0, so the input is padded in front to lanes × lane length.
"""

from __future__ import annotations

import numpy as np

POLYNOMIAL = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8  # TensorFlow's (and LevelDB's) crc32c::Mask constant
_SMALL_INPUT = 8192  # bytes: below this the byte loop is faster than the lanes' set-up
_MAX_LANES = 1 << 14
_LANE_BYTES = 64  # target bytes per lane below the lane cap (more lanes, fewer NumPy calls)


def _byte_table() -> np.ndarray:
    """uint32 [256]: the register after shifting in one zero byte, for each low byte."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _shift_zero_bytes(register: np.ndarray, count: int) -> np.ndarray:
    """The registers (uint32 array) after `count` zero bytes, one table step per byte."""
    for _ in range(count):
        register = (register >> 8) ^ _TABLE[register & 0xFF]
    return register


# One 4-byte step: new register = _WORD_LOW[x & 0xFFFF] ^ _WORD_HIGH[x >> 16], x = register ^ word.
_WORD_LOW = _shift_zero_bytes(np.arange(1 << 16, dtype=np.uint32), 4)
_WORD_HIGH = _shift_zero_bytes(np.arange(1 << 16, dtype=np.uint32) << 16, 4)


def crc32c_bytewise(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of `data` extending `crc`, one table lookup per byte (reference; small inputs)."""
    table = _TABLE_LIST
    register = crc ^ 0xFFFFFFFF
    for byte in bytes(data):
        register = (register >> 8) ^ table[(register ^ byte) & 0xFF]
    return register ^ 0xFFFFFFFF


def _byte_tables(columns: np.ndarray) -> np.ndarray:
    """uint32 [4, 256] tables of a GF(2) linear map given by the images of its 32 bit vectors."""
    bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # [256, 8]: bit k of byte j
    images = np.where(bits[None, :, :] == 1, columns.reshape(4, 1, 8), 0).astype(np.uint32)
    return np.bitwise_xor.reduce(images, axis=2)


def _apply(tables: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The linear map of `_byte_tables` applied to every uint32 in `values`."""
    return (tables[0][values & 0xFF] ^ tables[1][(values >> 8) & 0xFF]
            ^ tables[2][(values >> 16) & 0xFF] ^ tables[3][values >> 24])


def _lane_shape(size: int) -> tuple[int, int]:
    """(lanes, lane_bytes): lanes a power of two, lane_bytes a multiple of 4, product >= size."""
    lanes = 1
    while lanes < _MAX_LANES and lanes * 2 * _LANE_BYTES <= size:
        lanes *= 2
    lane_bytes = -(-size // lanes)
    return lanes, -(-lane_bytes // 4) * 4


def _merge_lanes(registers: np.ndarray, lane_bytes: int) -> int:
    """Merges the registers of consecutive lanes (a power of two of them, each lane_bytes long)."""
    columns = _shift_zero_bytes(np.uint32(1) << np.arange(32, dtype=np.uint32), lane_bytes)
    while len(registers) > 1:
        tables = _byte_tables(columns)
        registers = _apply(tables, registers[0::2]) ^ registers[1::2]
        columns = _apply(tables, columns)  # the shift by twice as many bytes
    return int(registers[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of `data` (any bytes-like object; an array is taken as its raw bytes), extending `crc`."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < _SMALL_INPUT:
        return crc32c_bytewise(view, crc)
    lanes, lane_bytes = _lane_shape(size)
    padded = np.zeros(lanes * lane_bytes, dtype=np.uint8)
    start = len(padded) - size
    padded[start:] = np.frombuffer(view, dtype=np.uint8)
    # The initial register XORed into the first 4 data bytes = a register that starts there.
    padded[start:start + 4] ^= np.frombuffer((crc ^ 0xFFFFFFFF).to_bytes(4, "little"), dtype=np.uint8)
    words = padded.view("<u4").reshape(lanes, lane_bytes // 4)
    register = np.zeros(lanes, dtype=np.uint32)
    for column in range(words.shape[1]):
        x = register ^ words[:, column]
        register = _WORD_LOW[x & 0xFFFF] ^ _WORD_HIGH[x >> 16]
    return _merge_lanes(register, lane_bytes) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """TensorFlow's masked form of a CRC (rotate right by 15 bits, add a constant)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """The CRC whose `mask` is `masked`."""
    rotated = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
