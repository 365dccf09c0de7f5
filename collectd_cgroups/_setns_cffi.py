# auto-generated file
import _cffi_backend

ffi = _cffi_backend.FFI('collectd_cgroups._setns_cffi',
    _version = 0x2601,
    _types = b'\x00\x00\x01\x0D\x00\x00\x07\x01\x00\x00\x07\x01\x00\x00\x00\x0F',
    _globals = (b'\x00\x00\x00\x23setns',0,),
)
