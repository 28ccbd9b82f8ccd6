# Finds Kokkos and sets FLASHRNN_KOKKOS_TARGET to the target to link.
# Shared by the build tree (backends/kokkos/CMakeLists.txt) and the installed
# package (flashrnn-kokkos.cmake), so both resolve Kokkos the same way.
#
#  1. find_package(Kokkos) providing Kokkos::kokkos: Kokkos 4.x as built on
#     clusters (any execution spaces; CUDA builds bring their own nvcc_wrapper).
#  2. Debian 12's libtrilinos-kokkos-dev (Kokkos 3.4, Serial): its
#     KokkosConfig.cmake (TriBITS) defines a Kokkos::kokkos whose include
#     path lacks Kokkos_Core.hpp and whose link line names targets it never
#     defines, so use find_package(KokkosCore) (target trilinos_kokkoscore)
#     plus the headers under <prefix>/include/trilinos.
set(FLASHRNN_KOKKOS_TARGET "")
find_package(Kokkos QUIET CONFIG)
set(_flashrnn_kokkos_usable FALSE)
if(TARGET Kokkos::kokkos)
  # A plain include path must hold Kokkos_Core.hpp; a standalone Kokkos keeps
  # its paths on Kokkos::kokkoscore (unset here) or in generator expressions.
  get_target_property(_flashrnn_kk_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
  set(_flashrnn_kokkos_usable TRUE)
  if(_flashrnn_kk_inc AND NOT _flashrnn_kk_inc MATCHES "\\$<")
    set(_flashrnn_kokkos_usable FALSE)
    foreach(_d ${_flashrnn_kk_inc})
      if(EXISTS "${_d}/Kokkos_Core.hpp")
        set(_flashrnn_kokkos_usable TRUE)
      endif()
    endforeach()
  endif()
endif()
if(_flashrnn_kokkos_usable)
  set(FLASHRNN_KOKKOS_TARGET Kokkos::kokkos)
  set(FLASHRNN_KOKKOS_FLAVOUR "Kokkos::kokkos ${Kokkos_VERSION}")
else()
  find_package(KokkosCore QUIET CONFIG)
  find_path(FLASHRNN_KOKKOS_INCLUDE_DIR Kokkos_Core.hpp PATH_SUFFIXES trilinos)
  if(TARGET trilinos_kokkoscore AND FLASHRNN_KOKKOS_INCLUDE_DIR)
    if(NOT TARGET flashrnn_trilinos_kokkos)
      # An imported wrapper adding the include directory Debian's config lacks.
      add_library(flashrnn_trilinos_kokkos INTERFACE IMPORTED)
      set_target_properties(flashrnn_trilinos_kokkos PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${FLASHRNN_KOKKOS_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES trilinos_kokkoscore)
    endif()
    set(FLASHRNN_KOKKOS_TARGET flashrnn_trilinos_kokkos)
    set(FLASHRNN_KOKKOS_FLAVOUR "Trilinos KokkosCore, Kokkos ${Kokkos_VERSION} (${FLASHRNN_KOKKOS_INCLUDE_DIR})")
  endif()
endif()
