add_library(starling_peer daemon.cc supernode_pool.cc segments.cc)
target_link_libraries(starling_peer
  PUBLIC starling_common starling_mesh nlohmann_json::nlohmann_json
  PRIVATE starling_engine starling_local_api starling_crypto starling_mesh_auth Threads::Threads starling_warnings)
