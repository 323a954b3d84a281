# Support for building ROS interfaces against the ROS 2 PyPI wheels (no ROS distro installed).
#
# The wheels' exported CMake targets carry the Python/NumPy include directories of the machine
# that built them (/opt/python/cp3XX-.../include). Those paths do not exist here, so every
# target that links the dependencies' Python typesupport fails to compile. We rewrite those
# entries to this interpreter's include dirs. With a regular ROS distro nothing matches and
# this is a no-op.
function(edge_vision_fix_wheel_python_includes)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
  set(_fixed_dirs ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
  foreach(_pkg IN LISTS ARGN)
    set(_target "${_pkg}::${_pkg}__rosidl_generator_py")
    if(NOT TARGET ${_target})
      continue()
    endif()
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new_dirs "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^/opt/python/")
        set(_changed TRUE)
      else()
        list(APPEND _new_dirs "${_dir}")
      endif()
    endforeach()
    if(_changed)
      list(APPEND _new_dirs ${_fixed_dirs})
      list(REMOVE_DUPLICATES _new_dirs)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new_dirs}")
      message(STATUS "edge_vision: rewrote wheel include dirs of ${_target}")
    endif()
  endforeach()
endfunction()
