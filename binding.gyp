# The CPU engine (core + addon) for machines with a C++17 compiler and no CMake: node-gyp ships
# with npm, and scripts/install.cjs falls back to it. FAISS and OpenBLAS are linked when found,
# the engine's own k-means and portable kernels are used otherwise; no CUDA (CMakeLists.txt
# builds that). Sources, defines and the version come from native/sources.json and package.json,
# the files CMakeLists.txt reads, through scripts/native-deps.cjs.
{
  'variables': {
    'semdedup_openblas%': '<!(node scripts/native-deps.cjs have openblas)',
    'semdedup_faiss%': '<!(node scripts/native-deps.cjs have faiss)',
  },
  'targets': [
    {
      'target_name': 'semdedup',
      'sources': ['<!@(node scripts/native-deps.cjs sources core engine addon)'],
      'include_dirs': [
        '<!@(node scripts/native-deps.cjs include_dirs core engine)',
        '<!(node scripts/native-deps.cjs addon-api)',
      ],
      'defines': [
        '<!@(node scripts/native-deps.cjs defines addon)',
        'SEMDEDUP_VERSION="<!(node scripts/native-deps.cjs version)"',
      ],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions', '-std=gnu++17', '-std=gnu++20'],
      'cflags_cc': ['-std=c++17', '-O3', '-fexceptions'],
      'ldflags': ['-pthread'],
      'conditions': [
        # FAISS first: its archive needs the BLAS and LAPACK linked after it.
        ['semdedup_faiss==1', {
          'sources': ['<!@(node scripts/native-deps.cjs sources faiss)'],
          'defines': ['<!@(node scripts/native-deps.cjs defines faiss)'],
          'include_dirs': ['<!@(node scripts/native-deps.cjs include faiss)'],
          'libraries': ['<!@(node scripts/native-deps.cjs lib faiss)'],
          'cflags_cc': ['-fopenmp'],
          'ldflags': ['-fopenmp'],
        }],
        ['semdedup_openblas==1', {
          'defines': ['<!@(node scripts/native-deps.cjs defines blas openblas)'],
          'include_dirs': ['<!@(node scripts/native-deps.cjs include openblas)'],
          'libraries': ['<!@(node scripts/native-deps.cjs lib openblas)', '-lm'],
        }],
      ],
    },
  ],
}
