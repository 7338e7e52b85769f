-- echo returns its input map unchanged (kt-protocol.md §16 T13).
kt = __kyototycoon__
function echo(inmap, outmap)
   for key, value in pairs(inmap) do
      outmap[key] = value
   end
   return kt.RVSUCCESS
end
