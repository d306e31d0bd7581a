# Install rules, the pkg-config file, the CMake package and the Debian
# packages (cpack -G DEB).  Components, one Debian package each:
#   runtime  libstreamtx0     libstreamtx.so.0 (the SONAME) and its version
#   dev      libstreamtx-dev  streamtx.h, libstreamtx.so, libstreamtx.a,
#                             streamtx.pc, lib/cmake/streamtx/
#   tools    streamtx-tools   stx and its man page
#   archive      libstreamtx-archive0    libstreamtx-archive.so.0 (needs libpq)
#   archive_dev  libstreamtx-archive-dev streamtx_archive.h, libstreamtx-archive.so
include(CMakePackageConfigHelpers)

set(STX_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/streamtx)

install(TARGETS streamtx EXPORT streamtxTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT dev)
install(TARGETS streamtx_static EXPORT streamtxTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT dev)
install(FILES ${CMAKE_SOURCE_DIR}/include/streamtx.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev)

# pkg-config: the shared library by default; `pkg-config --static` adds the
# private modules for libstreamtx.a.  The prefix is the one of the install
# (`cmake --install build --prefix P`, cpack's /usr), so the file is written
# in two steps: the version and modules now, the prefix at install time.
set(STX_PC_PREFIX "@STX_PC_PREFIX@")
foreach(d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(STX_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(STX_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
configure_file(${CMAKE_SOURCE_DIR}/cmake/streamtx.pc.in ${CMAKE_BINARY_DIR}/streamtx.pc.in @ONLY)
install(CODE "set(STX_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  configure_file(\"${CMAKE_BINARY_DIR}/streamtx.pc.in\" \"${CMAKE_BINARY_DIR}/streamtx.pc\" @ONLY)"
  COMPONENT dev)
install(FILES ${CMAKE_BINARY_DIR}/streamtx.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)

# CMake package: find_package(streamtx CONFIG) gives streamtx::streamtx
# (shared) and streamtx::streamtx_static.
install(EXPORT streamtxTargets NAMESPACE streamtx:: DESTINATION ${STX_CMAKE_DIR} COMPONENT dev)
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/streamtxConfig.cmake.in
  ${CMAKE_BINARY_DIR}/streamtxConfig.cmake INSTALL_DESTINATION ${STX_CMAKE_DIR})
# Before 1.0 a minor release may change the API: same minor version only.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/streamtxConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/streamtxConfig.cmake
  ${CMAKE_BINARY_DIR}/streamtxConfigVersion.cmake
  DESTINATION ${STX_CMAKE_DIR} COMPONENT dev)

# ---- Debian packages ------------------------------------------------------
set(CPACK_PACKAGE_NAME streamtx)
set(CPACK_PACKAGE_VENDOR streamtx)
set(CPACK_PACKAGE_CONTACT "streamtx maintainers <streamtx@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "exactly-once stream processing on Redis Streams")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL runtime dev tools)
if(STX_BUILD_ARCHIVE)
  list(APPEND CPACK_COMPONENTS_ALL archive archive_dev)
endif()
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# Library dependencies of the .so and of stx from dpkg-shlibdeps; the
# package's own library is found in the build tree.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR})
set(STX_DEB_SELF "libstreamtx0 (= ${PROJECT_VERSION}-1)")

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libstreamtx0)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# A shlibs file, so that packages built against libstreamtx0 depend on it.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
  "This package holds the shared library, libstreamtx.so.0.
streamtx reads a Redis stream through a consumer group, calls a handler for
each entry and commits everything the handler did in one Lua script.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libstreamtx-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "${STX_DEB_SELF}, libhiredis-dev, libmsgpack-dev, liblmdb-dev, libssl-dev, zlib1g-dev")
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "This package holds the development files.
The header streamtx.h, the static library, a pkg-config file (streamtx)
and a CMake package (find_package(streamtx) gives streamtx::streamtx).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME streamtx-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS "${STX_DEB_SELF}")
if(STX_BUILD_ARCHIVE)
  set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS
    "${STX_DEB_SELF}, libstreamtx-archive0 (= ${PROJECT_VERSION}-1)")
endif()

set(CPACK_DEBIAN_ARCHIVE_PACKAGE_NAME libstreamtx-archive0)
set(CPACK_DEBIAN_ARCHIVE_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_ARCHIVE_PACKAGE_DEPENDS "${STX_DEB_SELF}")
set(CPACK_DEBIAN_ARCHIVE_DESCRIPTION
  "This package holds libstreamtx-archive.so.0.
The archive keeps a stream's full history in PostgreSQL, written exactly once,
and reads that join it to what Redis still holds.")
set(CPACK_DEBIAN_ARCHIVE_DEV_PACKAGE_NAME libstreamtx-archive-dev)
set(CPACK_DEBIAN_ARCHIVE_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_ARCHIVE_DEV_PACKAGE_DEPENDS
  "libstreamtx-archive0 (= ${PROJECT_VERSION}-1), libstreamtx-dev (= ${PROJECT_VERSION}-1), libpq-dev")
set(CPACK_DEBIAN_ARCHIVE_DEV_DESCRIPTION
  "This package holds the archive's development files.
The header streamtx_archive.h and libstreamtx-archive.so.")
set(CPACK_DEBIAN_TOOLS_DESCRIPTION
  "This package holds the stx command-line tool.
stx inspects and operates streams, consumer groups, state and dead letters
kept by streamtx: info, produce, tail, replay, pending, dlq, state, reset,
trim, health.")

include(CPack)
