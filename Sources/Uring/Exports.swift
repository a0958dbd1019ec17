// The swift-system types that this module's API takes and returns, exported
// with it, so `import Uring` alone is enough to name them.
@_exported import struct SystemPackage.Errno
@_exported import struct SystemPackage.FileDescriptor
@_exported import struct SystemPackage.FilePath
@_exported import struct SystemPackage.FilePermissions
