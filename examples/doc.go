// Package ktdexamples is a module of its own, outside ktd's, that uses ktd the way
// another project would: through its public packages only (ktdtest, ktserver). Its
// tests prove that the public API is enough to run a KT-compatible server in a test
// and to speak KT's protocols to it. `make test` runs them.
package ktdexamples
