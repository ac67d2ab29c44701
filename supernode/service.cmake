# Included by supernode/CMakeLists.txt.
# starling_supernode_core: the pure parts (swarm registry, scheduler, members, seeder watch).
add_library(starling_supernode_core scheduler.cc swarm_registry.cc members.cc seeder_watch.cc)
target_link_libraries(starling_supernode_core PUBLIC starling_common starling_raft
  PRIVATE starling_warnings)

# starling_supernode: the service and its shell. Needs the crypto, mesh, engine and fetch
# components; defined only once they exist in the tree.
set(_starling_supernode_deps starling_tracker starling_crypto starling_mesh starling_engine
    starling_fetch)
set(_starling_supernode_ready TRUE)
foreach(dep ${_starling_supernode_deps})
  if(NOT TARGET ${dep})
    message(STATUS "starling_supernode: ${dep} not in the tree yet; service not built")
    set(_starling_supernode_ready FALSE)
  endif()
endforeach()
if(_starling_supernode_ready)
  add_library(starling_supernode service.cc supernode.cc cluster_log.cc raft_transport.cc)
  target_link_libraries(starling_supernode
    PUBLIC starling_supernode_core starling_tracker starling_raft_driver starling_mesh
           starling_mesh_auth starling_crypto starling_engine starling_fetch starling_common
    PRIVATE PkgConfig::SODIUM Threads::Threads starling_warnings)
endif()
