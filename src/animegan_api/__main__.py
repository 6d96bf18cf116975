from animegan_api.cli import main

raise SystemExit(main())
